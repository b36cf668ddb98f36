"""The scoring core: one set of functions behind batch scoring, outreach, monitoring and the HTTP
service, so none of them scores or explains a customer in its own way.

- `champions`: the `champion` models loaded from the registry, with their versions.
- `scoring`: feature matrices -> churn probability, CLV with its interval, value at risk, tier;
  `score_frame` for a features frame.
- `explain`: the features pushing each customer's risk up most, written by `reasons` (the
  phrasebook a CX agent reads).
- `ranking`: a whole population at a cutoff, scored and ranked by value at risk
  (`score_population` -> `ScoredList`), and writing the ranked list as a file.
- `columns`: the columns of a ranked list.
"""
