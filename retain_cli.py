"""The `retain` console script: one Typer app assembled from each package's own app."""

from __future__ import annotations

import typer

from features.cli import app as features_app
from monitoring.cli import app as monitoring_app
from serving.cli import app as serving_app
from training.cli import app as training_app

app = typer.Typer(
    name="retain",
    help="Retain: predict churn and customer value, and reach at-risk customers first.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(features_app)
app.add_typer(training_app)
app.add_typer(serving_app)
app.add_typer(monitoring_app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
