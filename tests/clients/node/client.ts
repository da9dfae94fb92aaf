// A frontend's calls, made with ServiceStack's npm client and the DTOs this service serves
// at /types/typescript (written next to this file as dtos.ts by the pytest driver).
// Prints one JSON object with what the client returned for each call.
//
//   BASE_URL=http://127.0.0.1:3000 API_KEY=... COMPANY_ID=... node build/client.js

import { JsonServiceClient } from "@servicestack/client"
import { ArticleToCreate, StripeCheckoutQueryResponse, StripeV1CreateCheckout } from "./dtos"

declare const process: { env: Record<string, string | undefined>; exit(code: number): never }

const baseUrl = process.env.BASE_URL as string
const apiKey = process.env.API_KEY as string
const companyId = process.env.COMPANY_ID as string
const run = process.env.RUN_ID as string

function checkout(reference: string, init: Partial<StripeV1CreateCheckout> = {}) {
    return new StripeV1CreateCheckout({
        CompanyId: companyId,
        CountryCode: "SE",
        Articles: [new ArticleToCreate({ ArticleId: 42, ArticleTypeId: 1 })],
        InternalReferenceId: `${run}-${reference}`,
        UiMode: "hosted",
        ...init,
    })
}

function client(basePath?: string | null) {
    const c = new JsonServiceClient(baseUrl)
    if (basePath !== undefined) c.useBasePath(basePath as string)
    c.headers.set("x-api-key", apiKey)
    return c
}

function session(r: StripeCheckoutQueryResponse) {
    return { SessionId: r.SessionId, Status: r.Status, Url: r.Url, type: r.constructor?.name }
}

async function failure(call: () => Promise<unknown>) {
    try {
        await call()
        return { failed: false }
    } catch (e: any) {
        return {
            failed: true,
            errorCode: e.responseStatus?.errorCode,
            message: e.responseStatus?.message,
            errors: e.responseStatus?.errors,
        }
    }
}

async function main() {
    const out: Record<string, unknown> = {}
    const urls: string[] = []
    const c = client()
    c.urlFilter = (url: string) => urls.push(url)

    out.post = session(await c.post(checkout("post")))

    const api = await c.api(checkout("api"))
    out.api = { succeeded: api.succeeded, response: api.response && session(api.response) }

    out.postToUrl = session(await c.postToUrl("/payment/stripe/v1/checkout", checkout("post-to-url")))

    out.jsonReply = session(await client(null).post(checkout("json-reply")))

    out.postInvalid = await failure(() => c.post(checkout("invalid", { CompanyId: "", Articles: [] })))

    const invalid = await c.api(checkout("invalid", { CompanyId: "", Articles: [] }))
    out.apiInvalid = {
        failed: invalid.failed,
        errorCode: invalid.errorCode,
        errorMessage: invalid.errorMessage,
        companyIdMessage: invalid.fieldErrorMessage("CompanyId"),
        articlesMessage: invalid.fieldErrorMessage("articles"),
        fieldNames: invalid.errors.map((e: any) => e.fieldName),
    }

    // Pay a session on the Stripe emulator's page, then ask again for the same reference.
    const paid = await c.post(checkout("paid"))
    await fetch(paid.Url, { method: "POST", redirect: "manual" })
    out.postConflict = await failure(() => c.post(checkout("paid")))
    const conflict = await c.api(checkout("paid"))
    out.apiConflict = { failed: conflict.failed, errorCode: conflict.errorCode, errorMessage: conflict.errorMessage }

    // GET applies to operations whose properties are all scalars; this one has Articles.
    out.get = await failure(() => c.get(checkout("get")))

    out.urls = urls
    console.log(JSON.stringify(out))
}

main().catch(e => {
    console.error(e)
    process.exit(1)
})
