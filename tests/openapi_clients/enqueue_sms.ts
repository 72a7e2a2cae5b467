// Enqueue an SMS job over HTTP and read its status, typed by openapi-typescript.
//
// tests/test_openapi_clients.py generates `api.d.ts` from the served OpenAPI document
// (`openapi-typescript <document> -o api.d.ts --default-non-nullable false`), type-checks
// this file against it with `tsc --strict`, and runs the output with Node:
//
//   node enqueue_sms.js <base url> <api key>
//
// It prints one JSON line: {"enqueued": EnqueuedJob, "status": JobStatus}.
import type { components, paths } from "./api";

type SmsPayload = components["schemas"]["SmsPayload"];
type EnqueueBody = paths["/channels/sms/jobs"]["post"]["requestBody"]["content"]["application/json"];
type Enqueued = paths["/channels/sms/jobs"]["post"]["responses"][202]["content"]["application/json"];
type Status = paths["/channels/sms/jobs/{job_id}"]["get"]["responses"][200]["content"]["application/json"];
type Problem = components["schemas"]["ErrorBody"] | components["schemas"]["ValidationErrorBody"];

async function call<T>(url: string, apiKey: string, init: RequestInit = {}): Promise<T> {
  const response = await fetch(url, {
    ...init,
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
  });
  if (!response.ok) {
    const problem = (await response.json()) as Problem;
    throw new Error(`${init.method ?? "GET"} ${url}: ${response.status} ${problem.detail}`);
  }
  return (await response.json()) as T;
}

async function main(base: string, apiKey: string): Promise<void> {
  const payload: SmsPayload = { to: "+14155550100", body: "hello from TypeScript" };
  const body: EnqueueBody = payload;
  const enqueued = await call<Enqueued>(`${base}/channels/sms/jobs`, apiKey, {
    method: "POST",
    body: JSON.stringify(body),
  });
  const status = await call<Status>(
    `${base}/channels/sms/jobs/${encodeURIComponent(enqueued.id)}`,
    apiKey,
  );
  const state: Status["state"] = status.state;
  console.log(JSON.stringify({ enqueued, status: { ...status, state } }));
}

const [base, apiKey] = process.argv.slice(2);
if (base === undefined || apiKey === undefined) {
  throw new Error("usage: node enqueue_sms.js <base url> <api key>");
}
main(base, apiKey).catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
