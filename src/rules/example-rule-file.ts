/**
 * A rule file that shows the rule language: printed by `spanledger rules test --help` and the base of
 * the development trace corpus's rule files (src/devtools/trace-corpus.ts).
 */
export const EXAMPLE_RULE_FILE = `rules:
  - id: high-value-payment-controls
    name: High-value payment controls
    description: Payments over 1000 need a fraud check and never bypass validation
    severity: critical
    condition: |
      when { payment.charge_card.where(amount > 1000) }
      always { payment.fraud_check }
      never { payment.bypass_validation }
  - id: too-many-retries
    name: More than 3 retries
    severity: medium
    condition: count(http.retry) > 3`;

/** The forms of the rule language, one line each: printed by `spanledger rules test --help` (README "The language"). */
export const RULE_LANGUAGE = `payment.charge                                 a span named payment.charge exists
payment.where(amount > 1000).where(currency == USD)   one such span satisfies every where
payment.where(amount > 1000 and (currency == USD or not verified))
                                               and / or / not / ( ) about one span; a bare attribute
                                               is a boolean (missing: false)
api.request.where(path contains admin)         substring (a member of a list attribute)
api.request.where(path matches "^/api/v[0-9]+/admin/")   RE2 regular expression, unanchored
payment.where(processor in [stripe, square])   one of a list
payment.amount > 1000                          direct comparison: payment.where(amount > 1000)
"GET /items"."http.status_code" >= 500         quotes keep a name with dots or spaces whole
endpoint matches "^/internal/"                 no span name: an attribute of any span
count(http.retry) > 3                          how many spans match (== != > >= < <=)
count(http.request) != count(http.response)
a and not (b or c)                             not > and > or, outside where as inside
when { payment.amount > 1000 }                 fires when "when" holds and "always" fails
always { fraud_check }                         or "never" holds (either, or both, any order)
never { bypass_validation }
when { count(http.retry) > 3 }                 "when" alone: fires when it holds
client.where(version < "2.0")                  > >= < <= against a string or identifier compare
                                               text (numbers when both sides are numbers)`;
