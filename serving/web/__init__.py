"""The CX workspace served under `/ui` by `retain serve`: sign-in and roles (`accounts`), the
at-risk list's index and trends (`index`), server-drawn charts (`charts`), the pages (`app`,
with `templates/` and `static/`), and `retain users` (`cli`)."""
