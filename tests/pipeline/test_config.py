import pytest

from pipeline.run.config import ConfigError, load_config

pytestmark = pytest.mark.fast

BASE = """
kind: code
source: {type: code, paths: [x.parquet]}
stages:
  - type: syntax_filter
  - type: lint_filter
    min_score: 7.5
"""


def write(tmp_path, text):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_valid_config_and_override_by_stage_name(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["stages.lint_filter.min_score=8", "ray.num_cpus=3",
                                              "source.shard_bytes=1000"])
    assert [s.name for s in cfg.stages] == ["syntax_filter", "lint_filter"]
    assert cfg.stages[1].min_score == 8.0
    assert cfg.ray.num_cpus == 3
    assert cfg.source.shard_bytes == 1000


def test_unknown_key_names_file_and_key(tmp_path):
    p = write(tmp_path, BASE.replace("min_score: 7.5", "min_scor: 7.5"))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value) and "stages.lint_filter.min_scor: unknown key" in str(e.value)


def test_ill_typed_key_names_file_and_key(tmp_path):
    p = write(tmp_path, BASE.replace("min_score: 7.5", "min_score: high"))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert f"{p}: stages.lint_filter.min_score:" in str(e.value)


def test_unknown_top_level_key_and_stage_type(tmp_path):
    with pytest.raises(ConfigError, match=r"cfg.yaml: bogus: unknown key"):
        load_config(write(tmp_path, BASE + "bogus: 1\n"))
    with pytest.raises(ConfigError, match=r"stages.nope.type: unknown stage type 'nope'"):
        load_config(write(tmp_path, BASE + "  - type: nope\n"))


def test_override_of_missing_stage_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no stage named 'dedup'"):
        load_config(write(tmp_path, BASE), ["stages.dedup.threshold=0.5"])


def test_duplicate_stage_names_rejected(tmp_path):
    with pytest.raises(ConfigError, match="duplicate stage names"):
        load_config(write(tmp_path, BASE + "  - type: syntax_filter\n"))


def test_shipped_configs_validate():
    from pathlib import Path

    for path in sorted((Path(__file__).parents[2] / "configs").glob("*.yaml")):
        load_config(path)
