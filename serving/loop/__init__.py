"""The closed loop: rows ingested one by one (`ingest`), held with the tables as one history
(`history`), negative moments found among them (`moments`), the customer rescored at once, and
recovery cases opened, worked and closed (`cases`), with a randomized holdout and hand-off
(`handoff`); `process` ties the steps together for the service and `retain ingest`.
"""
