import pytest

from configs import ConfigError, Settings, load_settings, settings_from_dict


def test_defaults_load_and_match_the_model_defaults():
    s = load_settings()
    assert s.horizon_days == 90
    assert s.features.windows_days == (7, 30, 90, 365)
    assert s.activity_event_types == ("purchase",)
    assert s == Settings()  # the YAML and the model agree, so neither drifts silently


def test_override_file_merges_over_defaults(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("horizon_days: 30\nfeatures:\n  windows_days: [30, 7]\n")
    s = load_settings(f)
    assert s.horizon_days == 30
    assert s.features.windows_days == (7, 30)  # sorted
    assert s.features.negative_sentiment_threshold == -0.05  # untouched keys keep defaults
    assert s.training.cutoffs == 4


@pytest.mark.parametrize(
    ("override", "path", "expected"),
    [
        ({"horizon_days": "soon"}, "horizon_days", "valid integer"),
        ({"horizon_days": 0}, "horizon_days", "greater than or equal to 1"),
        ({"features": {"windows_days": [7, -1]}}, "features.windows_days", "positive"),
        ({"features": {"windos_days": [7]}}, "features.windos_days", "unknown key"),
        ({"training": {"cutoffs": 1}}, "training.cutoffs", "greater than or equal to 2"),
        ({"outreach": {"outbox_url": "sqlite:///x.db"}}, "outreach.outbox_url", "set store.url"),
    ],
)
def test_bad_values_name_the_key_path_and_what_was_expected(override, path, expected):
    with pytest.raises(ConfigError) as info:
        settings_from_dict(override, "my.yaml")
    text = str(info.value)
    assert "my.yaml" in text
    assert f"  {path}" in text
    assert expected in text


def test_unreadable_or_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("horizon_days: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_settings(listy)
