// The cancel page (the CancelUrl; the embedded demo's own Cancel button comes here too).
// Retrying with the same booking reference makes the service expire the abandoned
// session before it creates the next one.
const reference = new URLSearchParams(window.location.search).get("booking");
if (reference) {
  document.querySelector("#booking-ref").textContent = reference;
  document.querySelector("#retry").href = `/demo?booking=${encodeURIComponent(reference)}`;
}
