"""Serving: everything after the registry's `champion` models.

- `scoring`: load the champions, score a features frame (probability, CLV with its interval,
  value at risk, tier, reasons, model versions); `reasons` writes the reasons for a CX agent.
- `batch`: rank a whole population (`retain score`) and keep the scored snapshot the service and
  outreach read.
- `outreach`, `outreach_dispatch`: who is handed to outreach, the durable outbox, file drop and
  webhook delivery (`retain outreach run|status`).
- `api`, `service`: the thin BentoML service (`retain serve`) over the same scoring functions.
"""
