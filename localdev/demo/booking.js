// The booking page: pick articles, then pay hosted (redirect to Stripe's page) or
// embedded (Stripe's form mounted here). The calls to the service are in checkout.js.
import config from "/demo/config.js";
import { createCheckout, formatAmount, mountEmbeddedCheckout, redirectToCheckout } from "/demo/checkout.js";

const $ = (selector) => document.querySelector(selector);
const params = new URLSearchParams(window.location.search);
// A real site has its booking id; the demo makes one up, or keeps it when the payer retries.
const reference = params.get("booking") || `demo-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
let embedded = null;

function articleRows() {
  return config.articles.map((article, index) => {
    const row = document.createElement("tr");
    const id = `qty-${article.ArticleTypeId}-${article.ArticleId}`;
    row.innerHTML = `<td><label></label></td><td class="num"></td>
      <td class="num"><input type="number" min="0" max="99" step="1"></td>`;
    const label = row.querySelector("label");
    label.htmlFor = id;
    label.textContent = article.Name;
    row.querySelector("td.num").textContent = formatAmount(article.UnitAmount, article.Currency);
    const input = row.querySelector("input");
    input.id = id;
    input.value = index === 0 ? "1" : "0";
    input.addEventListener("input", showTotal);
    return row;
  });
}

function chosenArticles() {
  return config.articles
    .map((a) => ({ article: a, quantity: Number($(`#qty-${a.ArticleTypeId}-${a.ArticleId}`).value) || 0 }))
    .filter(({ quantity }) => quantity > 0);
}

function showTotal() {
  const chosen = chosenArticles();
  const total = chosen.reduce((sum, { article, quantity }) => sum + article.UnitAmount * quantity, 0);
  $("#total").textContent = chosen.length ? formatAmount(total, chosen[0].article.Currency) : "–";
}

function showError(message) {
  $("#error").textContent = message;
  $("#error").hidden = !message;
}

function showExchange(request, answer) {
  $("#request").textContent = `POST /payment/stripe/v1/checkout\n${JSON.stringify(request, null, 2)}`;
  const shown = { ...answer };
  if (shown.ClientSecret) shown.ClientSecret = `${shown.ClientSecret.slice(0, 12)}… (for Stripe.js only)`;
  $("#answer").textContent = JSON.stringify(shown, null, 2);
}

function setBusy(busy) {
  $("#pay-hosted").disabled = busy;
  $("#pay-embedded").disabled = busy || !config.publishableKey;
}

async function pay(uiMode) {
  showError("");
  const chosen = chosenArticles();
  if (!chosen.length) {
    showError("Choose at least one article.");
    return;
  }
  const base = `${window.location.origin}/demo`;
  const booking = encodeURIComponent(reference);
  const request = {
    reference,
    uiMode,
    articles: chosen.map(({ article, quantity }) => ({
      articleTypeId: article.ArticleTypeId, articleId: article.ArticleId, quantity })),
    confirmationUrl: `${base}/confirmed?session_id={CHECKOUT_SESSION_ID}&booking=${booking}`,
    cancelUrl: `${base}/cancelled?booking=${booking}`,
  };
  setBusy(true);
  try {
    if (embedded) {
      embedded.destroy();
      embedded = null;
    }
    const session = await createCheckout(config, request);
    showExchange(request, session);
    if (uiMode === "hosted") {
      redirectToCheckout(session);
      return;
    }
    $("#embedded").hidden = false;
    $("#booking").hidden = true;
    embedded = await mountEmbeddedCheckout(config, session, "#checkout");
  } catch (error) {
    showError(error.errorCode ? `${error.message} (${error.errorCode})` : error.message);
    $("#embedded").hidden = true;
    $("#booking").hidden = false;
  } finally {
    setBusy(false);
  }
}

function cancelEmbedded() {
  // Stripe's embedded form has no cancel button: the site offers its own. The session
  // stays open at Stripe until the next checkout for this booking expires it.
  if (embedded) embedded.destroy();
  embedded = null;
  window.location.assign(`/demo/cancelled?booking=${encodeURIComponent(reference)}`);
}

$("#booking-ref").textContent = reference;
$("#articles").append(...articleRows());
showTotal();
$("#pay-hosted").addEventListener("click", () => pay("hosted"));
$("#pay-embedded").addEventListener("click", () => pay("embedded"));
$("#cancel-embedded").addEventListener("click", cancelEmbedded);
if (!config.publishableKey) {
  $("#pay-embedded").title = "Set STRIPE_PUBLISHABLE_KEY (pk_test_...) for embedded mode with real Stripe.";
}
setBusy(false);
document.body.dataset.ready = "true";
