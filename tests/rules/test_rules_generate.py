"""voicedrive-mixin: generated files are fresh, --check catches drift, overrides write apart."""

import shutil
from pathlib import Path

import pytest
import yaml

from voicedrive_mixin import generate, readme, rules
from voicedrive_mixin.readme import BEGIN, END
from voicedrive_mixin.thresholds import load_thresholds

REPO = Path(__file__).resolve().parents[2]
RULES = "prometheus/rules/voicedrive.rules.yml"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A copy of the repository's generated files and README to regenerate into."""
    for gen in generate.GENERATORS:
        (tmp_path / gen.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / gen.path, tmp_path / gen.path)
    return tmp_path


def test_repository_files_are_up_to_date() -> None:
    assert generate.main(["--check"]) == 0


def test_check_names_a_stale_rule_file(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = root / RULES
    rules.write_text(rules.read_text(encoding="utf-8").replace("> 0.5", "> 0.7"), "utf-8")
    assert generate.main(["--root", str(root), "--check"]) == 1
    assert capsys.readouterr().err == f"stale: {RULES} (run `make generate`)\n"


def test_check_names_every_stale_file(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / RULES).unlink()
    readme = root / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8").replace("| 10m |", "| 9m |"), "utf-8")
    assert generate.main(["--root", str(root), "--check"]) == 1
    err = capsys.readouterr().err
    assert f"stale: {RULES}" in err
    assert "stale: README.md" in err


def test_check_writes_nothing(root: Path) -> None:
    (root / RULES).write_text("old\n", encoding="utf-8")
    generate.main(["--root", str(root), "--check"])
    assert (root / RULES).read_text(encoding="utf-8") == "old\n"


def test_one_threshold_edit_changes_rules_and_readme_table(root: Path, tmp_path: Path) -> None:
    source = (REPO / "mixin" / "thresholds.yml").read_text(encoding="utf-8")
    edited = tmp_path / "thresholds.yml"
    edited.write_text(source.replace("threshold: 500ms", "threshold: 300ms"), encoding="utf-8")
    assert generate.main(["--root", str(root), "--thresholds", str(edited)]) == 0
    rules = (root / RULES).read_text(encoding="utf-8")
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "endpoint:voicedrive_api_request_duration_seconds:quantile > 0.3\n" in rules
    assert "しきい値 300ms" in rules
    assert "over 5m > 300ms" in readme
    assert generate.main(["--root", str(root), "--thresholds", str(edited), "--check"]) == 0


def test_readme_outside_the_table_is_kept(root: Path, tmp_path: Path) -> None:
    readme = root / "README.md"
    before = readme.read_text(encoding="utf-8")
    source = (REPO / "mixin" / "thresholds.yml").read_text(encoding="utf-8")
    edited = tmp_path / "thresholds.yml"
    edited.write_text(source.replace("for: 10m", "for: 20m"), encoding="utf-8")
    generate.main(["--root", str(root), "--thresholds", str(edited)])
    after = readme.read_text(encoding="utf-8")
    assert after != before
    assert before.split(BEGIN)[0] == after.split(BEGIN)[0]
    assert before.split(END)[1] == after.split(END)[1]


def test_overrides_write_to_the_output_dir_only(tmp_path: Path) -> None:
    overrides = tmp_path / "deploy.yml"
    overrides.write_text("alerts:\n  VoiceDriveAPIDown:\n    for: 3m\n", encoding="utf-8")
    out = tmp_path / "out"
    assert generate.main(["--overrides", str(overrides), "--output-dir", str(out)]) == 0
    assert "for: 3m" in (out / RULES).read_text(encoding="utf-8")
    assert not (out / "README.md").exists()
    assert generate.main(["--check"]) == 0  # the repository is untouched


def test_overrides_without_output_dir_are_refused(tmp_path: Path) -> None:
    overrides = tmp_path / "deploy.yml"
    overrides.write_text("{}\n", encoding="utf-8")
    with pytest.raises(SystemExit) as info:
        generate.main(["--overrides", str(overrides)])
    assert info.value.code == 2


def test_invalid_overrides_exit_1_with_the_key_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = tmp_path / "deploy.yml"
    overrides.write_text("alerts:\n  Nope: {}\n", encoding="utf-8")
    code = generate.main(["--overrides", str(overrides), "--output-dir", str(tmp_path / "o")])
    assert code == 1
    assert f"voicedrive-mixin: {overrides}: alerts.Nope: unknown alert" in capsys.readouterr().err


def test_alert_table_sits_inside_the_rules_section() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- BEGIN rules -->")[1].split("<!-- END rules -->")[0]
    assert BEGIN in section
    assert END in section


def test_generator_paths_are_unique() -> None:
    paths = [g.path for g in generate.GENERATORS if isinstance(g, generate.File)]
    assert len(paths) == len(set(paths))


def test_keep_firing_for_is_emitted_only_where_it_is_set() -> None:
    groups = yaml.safe_load(rules.rule_file(load_thresholds()))["groups"]
    keep = {r["alert"]: r["keep_firing_for"] for r in groups[0]["rules"] if "keep_firing_for" in r}
    assert keep == {"VoiceDriveSystemDown": "1m", "VoiceDriveNotificationMassFailure": "6m"}


def test_readme_table_shows_keep_firing_for() -> None:
    table = readme.alert_table(load_thresholds())
    assert "| for | keep firing for | level |" in table
    row = next(line for line in table.splitlines() if "`VoiceDriveSystemDown`" in line)
    assert "| 1m | 1m | 4 | critical |" in row
    row = next(line for line in table.splitlines() if "`VoiceDriveAPIDown`" in line)
    assert "| 2m | - | 3 | critical |" in row
