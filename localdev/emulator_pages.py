"""The payer's side of the Stripe emulator: the Checkout page and a stand-in for Stripe.js.

A hosted session's `url` opens `checkout_page(..., embedded=False)`; the stand-in served
at `/v3/` mounts the same page (`embedded=True`) in an iframe, as Stripe.js's embedded
Checkout does. Element ids are a contract for browser tests: `#pay-card`, `#pay-delayed`,
`#cancel`, `#status`, `#settle-succeeded`, `#settle-failed`. Everything is inline, so the
pages work offline, and every value is escaped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

ZERO_DECIMAL = {"jpy", "isk", "huf"}  # (huf is two-decimal at Stripe for most uses; kept simple)

# Messages the embedded page posts to the page that mounted it.
COMPLETE_MESSAGE = "stripe-emulator:checkout-complete"

_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f9fc;color:#1a1f36}
main{max-width:34rem;margin:2rem auto;padding:1.5rem;background:#fff;border-radius:8px;
box-shadow:0 2px 8px rgba(0,0,0,.08)}
.test{display:inline-block;background:#ffde92;color:#a04800;font-size:12px;font-weight:600;
padding:0 .4rem;border-radius:4px}
table{width:100%;border-collapse:collapse;margin:1rem 0}
th,td{padding:.4rem 0;text-align:left;border-bottom:1px solid #e3e8ee}
td.n,th.n{text-align:right}
.total{font-size:1.3rem;font-weight:600}
button{display:block;width:100%;margin:.5rem 0;padding:.7rem;font-size:1rem;border:0;
border-radius:6px;background:#635bff;color:#fff;cursor:pointer}
button.secondary{background:#e3e8ee;color:#1a1f36}
input{width:100%;box-sizing:border-box;padding:.5rem;margin:.2rem 0 .6rem;font-size:1rem}
.message{padding:.6rem;background:#fff3f3;border-radius:6px}
"""


def format_amount(amount: int, currency: str) -> str:
    """Minor units as a reader expects them: `1,234.50 SEK`, `1,500 JPY`."""
    code = currency.upper()
    if currency.lower() in ZERO_DECIMAL:
        return f"{amount:,} {code}"
    return f"{amount / 100:,.2f} {code}"


def _document(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def message_page(title: str, message: str) -> str:
    """A page that only says something (no such session, wrong client secret)."""
    return _document(title, f"<h1>{escape(title)}</h1><p>{escape(message)}</p>")


def checkout_page(
    session: Mapping[str, Any],
    line_items: Sequence[Mapping[str, Any]],
    *,
    embedded: bool,
    form_action: str,
    payment_processing: bool,
    message: str | None = None,
) -> str:
    """The Checkout page of a session: its line items, its total and what the payer can do.

    An open session offers `#pay-card` (paid at once), `#pay-delayed` (a bank debit:
    complete but unpaid until the bank answers) and, on a hosted page with a
    `cancel_url`, the `#cancel` link back to the merchant. A completed session whose
    payment is still processing offers `#settle-succeeded` and `#settle-failed`,
    standing in for the bank. In an embedded page a payment that redirects targets the
    top window.
    """
    currency = str(session["currency"])
    rows = "".join(
        "<tr>"
        f"<td>{escape(str(item['name']))}</td>"
        f"<td class=n>{int(item['quantity'])}</td>"
        f"<td class=n>{escape(format_amount(int(item['unit_amount']), currency))}</td>"
        f"<td class=n>{escape(format_amount(int(item['amount_total']), currency))}</td>"
        "</tr>"
        for item in line_items
    )
    status = str(session["status"])
    parts = [
        "<p><span class=test>TEST MODE</span> Stripe Checkout emulator</p>",
        "<h1>Pay</h1>",
        "<table><thead><tr><th>Item</th><th class=n>Qty</th><th class=n>Unit price</th>"
        f"<th class=n>Amount</th></tr></thead><tbody>{rows}</tbody></table>",
        f"<p class=total>Total <span id=total>{escape(format_amount(int(session['amount_total']), currency))}"
        "</span></p>",
        f"<p>Status: <strong id=status>{escape(status)}</strong> · payment "
        f"<span id=payment-status>{escape(str(session['payment_status']))}</span></p>",
    ]
    if message:
        parts.append(f"<p class=message id=message role=alert>{escape(message)}</p>")
    action = escape(form_action, quote=True)
    if status == "open":
        redirects = not embedded or session.get("redirect_on_completion") in {None, "always"}
        target = "_top" if embedded and redirects else "_self"
        email = escape(str(session.get("customer_email") or "payer@example.com"), quote=True)
        parts.append(
            f'<form method=post action="{action}" target={target}>'
            f'<label>Email<input type=email name=email value="{email}" required></label>'
            "<button type=submit id=pay-card name=action value=card>Pay with card</button>"
            "<button type=submit id=pay-delayed name=action value=delayed class=secondary>"
            "Pay by bank debit — settles later</button></form>"
        )
    elif payment_processing:
        parts.append(
            f'<form method=post action="{action}" target=_self>'
            "<p>The bank debit is processing.</p>"
            "<button type=submit id=settle-succeeded name=action value=settle_succeeded>"
            "Simulate the bank: payment succeeds</button>"
            "<button type=submit id=settle-failed name=action value=settle_failed class=secondary>"
            "Simulate the bank: payment fails</button></form>"
        )
    if not embedded and status == "open" and session.get("cancel_url"):
        href = escape(str(session["cancel_url"]), quote=True)
        parts.append(f'<p><a id=cancel href="{href}">Cancel and return to the merchant</a></p>')
    return _document("Stripe Checkout emulator", "".join(parts))


def completed_in_frame_page(session_id: str) -> str:
    """What an embedded page shows after a payment that does not redirect: it tells its parent."""
    script = (
        "<script>parent.postMessage("
        + json.dumps({"type": COMPLETE_MESSAGE, "sessionId": session_id}).replace("</", "<\\/")
        + ',"*");</script>'
    )
    return _document("Payment complete", f"<h1>Payment complete</h1><p id=status>complete</p>{script}")


def stripe_js(emulator_url: str) -> str:
    """A stand-in for `https://js.stripe.com/v3/`: `Stripe(key).initEmbeddedCheckout(...)`.

    As with Stripe.js, `initEmbeddedCheckout({fetchClientSecret})` resolves to an object
    with `mount(selectorOrElement)`, `unmount()` and `destroy()`, and only one may exist
    at a time. `mount` shows the emulator's embedded page in an iframe; the iframe posts
    the payment to the emulator itself and navigates the top window to the `return_url`,
    so the page that mounts it needs no CORS.
    """
    return _STRIPE_JS.replace("__EMULATOR_URL__", json.dumps(emulator_url))


_STRIPE_JS = """\
/* Stripe.js stand-in served by the Stripe Checkout emulator (embedded Checkout only). */
(function () {
  "use strict";
  var script = document.currentScript;
  var origin = script && script.src ? new URL(script.src).origin : __EMULATOR_URL__;
  var current = null;

  function integrationError(message) {
    var error = new Error(message);
    error.name = "IntegrationError";
    return error;
  }

  function EmbeddedCheckout(sessionId, clientSecret, onComplete) {
    this._iframe = null;
    this._destroyed = false;
    this._listener = function (event) {
      var data = event.data || {};
      if (event.origin === origin && data.type === "stripe-emulator:checkout-complete" &&
          data.sessionId === sessionId && typeof onComplete === "function") {
        onComplete();
      }
    };
    this._src = origin + "/c/embedded/" + encodeURIComponent(sessionId) +
      "?client_secret=" + encodeURIComponent(clientSecret);
    window.addEventListener("message", this._listener);
  }

  EmbeddedCheckout.prototype.mount = function (target) {
    if (this._destroyed) {
      throw integrationError("This Embedded Checkout has been destroyed.");
    }
    if (this._iframe) {
      throw integrationError("This Embedded Checkout is already mounted.");
    }
    var element = typeof target === "string" ? document.querySelector(target) : target;
    if (!element || typeof element.appendChild !== "function") {
      throw integrationError("mount(): no element matches " + String(target) + ".");
    }
    var iframe = document.createElement("iframe");
    iframe.src = this._src;
    iframe.name = "embedded-checkout";
    iframe.title = "Secure Checkout (Stripe emulator)";
    iframe.allow = "payment";
    iframe.style.cssText = "width:100%;min-height:640px;border:0;display:block";
    element.appendChild(iframe);
    this._iframe = iframe;
  };

  EmbeddedCheckout.prototype.unmount = function () {
    if (this._iframe && this._iframe.parentNode) {
      this._iframe.parentNode.removeChild(this._iframe);
    }
    this._iframe = null;
  };

  EmbeddedCheckout.prototype.destroy = function () {
    this.unmount();
    window.removeEventListener("message", this._listener);
    this._destroyed = true;
    if (current === this) {
      current = null;
    }
  };

  function Stripe(publishableKey, options) {
    if (!(this instanceof Stripe)) {
      return new Stripe(publishableKey, options);
    }
    if (typeof publishableKey !== "string" || !/^pk_(test|live)_/.test(publishableKey)) {
      throw integrationError("Invalid value for Stripe(): apiKey should be a publishable key " +
        "(pk_test_...). You specified: " + String(publishableKey) + ".");
    }
    this._publishableKey = publishableKey;
    this._options = options || {};
  }

  Stripe.prototype.initEmbeddedCheckout = function (options) {
    options = options || {};
    var fetchClientSecret = options.fetchClientSecret;
    if (typeof fetchClientSecret !== "function" && typeof options.clientSecret === "string") {
      fetchClientSecret = function () { return options.clientSecret; };
    }
    if (typeof fetchClientSecret !== "function") {
      return Promise.reject(integrationError(
        "initEmbeddedCheckout(): fetchClientSecret must be a function returning a client secret."));
    }
    if (current) {
      return Promise.reject(integrationError(
        "You cannot have multiple Embedded Checkout objects. Call destroy() on the first one."));
    }
    current = {};  // reserved while the client secret is fetched
    return Promise.resolve().then(fetchClientSecret).then(function (clientSecret) {
      var match = /^(cs_(?:test|live)_[A-Za-z0-9]+)_secret_[A-Za-z0-9_-]+$/.exec(String(clientSecret));
      if (!match) {
        throw integrationError("initEmbeddedCheckout(): invalid client secret.");
      }
      current = new EmbeddedCheckout(match[1], String(clientSecret), options.onComplete);
      return current;
    }).catch(function (error) {
      current = null;
      throw error;
    });
  };

  window.Stripe = Stripe;
})();
"""
