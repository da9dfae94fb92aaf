// How a booking frontend uses the checkout service, in plain browser JavaScript:
//
//   1. createCheckout: a Checkout Session for a booking (article ids only: the service
//      prices them from the company's catalogue),
//   2. redirectToCheckout (hosted: Stripe's page) or mountEmbeddedCheckout (embedded:
//      Stripe's form inside this page, through Stripe.js),
//   3. checkoutStatus: on the confirmation page, whether the booking is paid.
//
// `config` holds the API's base URL and key, the company id and country, and where
// Stripe.js comes from (https://js.stripe.com/v3/ in production; ./dev run points it at
// the Stripe emulator's stand-in). The demo pages in this folder import this module.

const CHECKOUT = "/payment/stripe/v1/checkout";
const STATUS = "/payment/stripe/v1/checkout/status";

/** A non-2xx answer: the HTTP status and the service's ResponseStatus (ErrorCode, Message, Errors). */
export class CheckoutError extends Error {
  constructor(httpStatus, responseStatus) {
    super(responseStatus.Message || `The checkout service answered HTTP ${httpStatus}.`);
    this.httpStatus = httpStatus;
    this.errorCode = responseStatus.ErrorCode || "HttpError";
    this.errors = responseStatus.Errors || [];
  }
}

async function post(config, path, body) {
  let response;
  try {
    response = await fetch(config.apiBase + path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "x-api-key": config.apiKey },
      body: JSON.stringify(body),
    });
  } catch (error) {
    throw new CheckoutError(0, { ErrorCode: "NetworkError", Message: "The checkout service cannot be reached." });
  }
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new CheckoutError(response.status, answer.ResponseStatus || {});
  return answer;
}

/**
 * Creates a Checkout Session for one booking and returns the service's answer:
 * hosted: {SessionId, Url, Status}; embedded: {SessionId, ClientSecret, Status, StripeAccount?}.
 * Calling again for the same reference expires the earlier session; a paid reference is a 409.
 */
export function createCheckout(config, { reference, articles, uiMode, confirmationUrl, cancelUrl }) {
  return post(config, CHECKOUT, {
    CompanyId: config.companyId,
    CountryCode: config.countryCode,
    Articles: articles.map((a) => ({ ArticleTypeId: a.articleTypeId, ArticleId: a.articleId, Quantity: a.quantity })),
    InternalReferenceId: reference,
    // Stripe puts the session's id in place of {CHECKOUT_SESSION_ID} when it sends the payer back.
    ConfirmationUrl: confirmationUrl,
    CancelUrl: uiMode === "hosted" ? cancelUrl : undefined, // not allowed with embedded
    UiMode: uiMode,
  });
}

/** Hosted mode: send the payer to Stripe's Checkout page. */
export function redirectToCheckout(session) {
  window.location.assign(session.Url);
}

const scripts = new Map();

function loadScript(src) {
  if (!scripts.has(src)) {
    scripts.set(src, new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.onload = resolve;
      script.onerror = () => {
        scripts.delete(src);
        reject(new Error(`Stripe.js could not be loaded from ${src}.`));
      };
      document.head.append(script);
    }));
  }
  return scripts.get(src);
}

/**
 * Embedded mode: loads Stripe.js and mounts Stripe's Checkout form into `selector`.
 * Resolves to the embedded checkout; call its destroy() before mounting another.
 * After paying, Stripe sends the payer to the ConfirmationUrl (its return_url).
 */
export async function mountEmbeddedCheckout(config, session, selector) {
  await loadScript(config.stripeJsUrl);
  // On Stripe Connect the session lives on the company's account: Stripe.js must know it.
  const options = session.StripeAccount ? { stripeAccount: session.StripeAccount } : {};
  const stripe = window.Stripe(config.publishableKey, options);
  const checkout = await stripe.initEmbeddedCheckout({ fetchClientSecret: async () => session.ClientSecret });
  checkout.mount(selector);
  return checkout;
}

/** The session's state: {Status, PaymentStatus, CustomerEmail, InternalReferenceId}. */
export function checkoutStatus(config, sessionId) {
  return post(config, STATUS, { CompanyId: config.companyId, SessionId: sessionId });
}

/**
 * What the payer should be told about a status answer. `final`: nothing will change by
 * waiting; otherwise ask again in a moment (a delayed payment method settles later).
 */
export function describeStatus(answer) {
  const { Status: status, PaymentStatus: payment } = answer;
  if (status === "complete" && payment === "paid") {
    return { state: "confirmed", title: "Booking confirmed — paid", final: true };
  }
  if (status === "complete" && payment === "no_payment_required") {
    return { state: "confirmed", title: "Booking confirmed", final: true };
  }
  if (status === "complete") {
    return { state: "processing", title: "Payment processing", final: false,
             detail: "Your payment method settles later; the booking is confirmed when it does." };
  }
  if (status === "expired") {
    return { state: "expired", title: "Payment cancelled or expired", final: true,
             detail: "Nothing was charged." };
  }
  return { state: "open", title: "Waiting for the payment", final: false,
           detail: "The payment has not been completed yet." };
}

/** Minor units as the payer reads them, e.g. 45000 SEK -> "450,00 kr". */
export function formatAmount(minorUnits, currency, locale = "sv-SE") {
  const format = new Intl.NumberFormat(locale, { style: "currency", currency });
  const digits = format.resolvedOptions().maximumFractionDigits;
  return format.format(minorUnits / 10 ** digits);
}
