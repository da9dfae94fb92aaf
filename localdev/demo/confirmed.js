// The confirmation page (the ConfirmationUrl): Stripe sends the payer here with the
// session's id in place of {CHECKOUT_SESSION_ID}. The redirect proves nothing by
// itself, so the page asks the service until the payment is settled.
import config from "/demo/config.js";
import { checkoutStatus, describeStatus } from "/demo/checkout.js";

const $ = (selector) => document.querySelector(selector);
const params = new URLSearchParams(window.location.search);
const sessionId = params.get("session_id");
const DELAYS_MS = [500, 1000, 1000, 2000, 2000, 3000]; // then every 3 s
const GIVE_UP_AFTER_MS = 2 * 60 * 1000;
let started = Date.now();

function show({ state, title, detail = "" }) {
  $("#status-card").dataset.state = state;
  $("#status-title").textContent = title;
  $("#status-detail").textContent = detail;
}

function showRetry(reference) {
  if (!reference) return;
  $("#retry").href = `/demo?booking=${encodeURIComponent(reference)}`;
  $("#retry").hidden = false;
}

async function poll(attempt = 0) {
  $("#check-again").hidden = true;
  let answer;
  try {
    answer = await checkoutStatus(config, sessionId);
  } catch (error) {
    if (error.httpStatus === 404) {
      show({ state: "error", title: "Unknown payment", detail: error.message });
      return;
    }
    show({ state: "error", title: "Could not check the payment", detail: `${error.message} Retrying…` });
    answer = null;
  }
  if (answer) {
    const reference = answer.InternalReferenceId || params.get("booking");
    $("#booking-ref").textContent = reference || "–";
    $("#customer-email").textContent = answer.CustomerEmail || "–";
    const described = describeStatus(answer);
    show(described);
    if (described.state === "expired") showRetry(reference);
    if (described.final) return;
  }
  if (Date.now() - started > GIVE_UP_AFTER_MS) {
    $("#status-detail").textContent += " We will confirm by email once the payment settles.";
    $("#check-again").hidden = false;
    return;
  }
  setTimeout(() => poll(attempt + 1), DELAYS_MS[Math.min(attempt, DELAYS_MS.length - 1)]);
}

$("#session-id").textContent = sessionId || "–";
$("#booking-ref").textContent = params.get("booking") || "–";
$("#check-again").addEventListener("click", () => {
  started = Date.now();
  poll();
});
if (!sessionId || sessionId.includes("{")) {
  show({ state: "error", title: "No payment to check", detail: "The address has no session_id." });
} else {
  poll();
}
