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
