"""Yardsticks for `./dev bench`; never part of the Lambda package."""
