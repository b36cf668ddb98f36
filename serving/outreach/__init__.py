"""Outreach: the policy that picks high-impact at-risk customers, a recorded control group, and the
durable outbox every contact passes through on its way to a dispatcher.

The flow of one run at an explicit `as_of` (nothing here reads the clock):

1. `select_contacts` walks the scored list by value at risk (highest first) and keeps customers
   with churn probability >= `min_churn_probability` and CLV >= `min_clv`, not excluded by segment
   or id, and not in cooldown. Each is assigned to `control` when a hash of (campaign, window,
   customer) falls below `control_share`, else to `contact`; the walk stops once
   `capacity_per_run` contacts are taken (capacity counts the customers the CX team will reach;
   the controls drawn among them come along and are recorded, never contacted).
2. `Outbox.record_run` writes the run and all its rows in one transaction: a crash leaves either
   the whole selection or nothing. A run is identified by (campaign, as_of): running the same
   as_of again selects nothing new, it only dispatches what is still pending.
3. A dispatcher (`serving.outreach.dispatch`: a webhook when a URL is configured, otherwise a CSV
   file drop) delivers pending contacts; a row becomes `sent` only after the receiver accepted it.

Definitions:
- campaign window: the as_of date bucketed into periods of `cooldown_days` days counted from
  1970-01-01 (1 day when cooldown is 0), labelled `<start date>/<days>d`. Two selections of one
  customer are always at least `cooldown_days` apart, so they always fall in different windows.
- idempotency key: the first 32 hex digits of sha256("campaign|window|customer_id"); the same
  customer in the same campaign window always gets the same key (unique in the outbox), a new
  window gives a new key.
- cooldown: a customer is not selected when any outbox row (any campaign, contact or control)
  has an as_of less than `cooldown_days` before or after this as_of. Controls enter cooldown too,
  so they are not picked up and contacted by the next run while their outcome is being measured.
"""
