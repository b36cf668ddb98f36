"""Serving: everything after the registry's `champion` models. Imports nothing of `training/`;
models come from the registry as `model` package objects.

- `core`: the scoring core (champions, scores, reasons, ranking a population).
- `score_store`: scored lists by date, `LATEST` and their metadata (batch writes, the service
  and monitoring read).
- `outreach`: policy, the durable outbox, dispatch (webhook, file drop), one run end to end.
- `http`: the BentoML service (`retain serve`): payloads, feature records, the loaded scored
  list, the service core, the auth guard.
- `cli`: `retain score | serve | outreach ...`.
"""
