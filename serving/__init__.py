"""Serving: the scoring core over the `champion` models, batch scoring (ranked at-risk lists with
reasons), outreach (policy, durable outbox, dispatchers) and the thin BentoML service.

Empty until the scoring issue lands; see ../shared/DESIGN.md for the plan.
"""
