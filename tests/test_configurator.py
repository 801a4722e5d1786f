import pytest

from configurator import configure


def defaults():
    return dict(batch_size=12, learning_rate=6e-4, compile=True, dataset="openwebtext",
                vocab_size=0, auto=None)


def test_overrides_and_types(capsys):
    ns = defaults()
    out = configure(ns, ["--batch_size=4", "--learning_rate=1", "--compile=false",
                         "--dataset=my/data", "--vocab_size=5000"])
    assert ns["batch_size"] == 4 and ns["learning_rate"] == 1.0
    assert isinstance(ns["learning_rate"], float)
    assert ns["compile"] is False and ns["dataset"] == "my/data" and ns["vocab_size"] == 5000
    assert out["batch_size"] == 4
    assert "batch_size = 4" in capsys.readouterr().out


@pytest.mark.parametrize("value,expected", [("True", True), ("true", True), ("1", True),
                                            ("False", False), ("false", False), ("0", False)])
def test_booleans(value, expected):
    ns = defaults()
    configure(ns, [f"--compile={value}"], verbose=False)
    assert ns["compile"] is expected


@pytest.mark.parametrize("value,expected", [("None", None), ("true", True), ("0", False)])
def test_none_default_is_automatic_or_a_bool(value, expected):
    ns = defaults()
    configure(ns, [f"--auto={value}"], verbose=False)
    assert ns["auto"] is expected
    with pytest.raises(ValueError, match="expects a bool"):
        configure(defaults(), ["--auto=banana"])


def test_unknown_key_names_closest():
    with pytest.raises(ValueError, match="did you mean 'batch_size'"):
        configure(defaults(), ["--batch_sise=3"])


@pytest.mark.parametrize("arg,expected", [("--batch_size=2.5", "expects an int"),
                                          ("--learning_rate=fast", "expects a finite float"),
                                          ("--learning_rate=nan", "expects a finite float"),
                                          ("--learning_rate=1e999", "expects a finite float"),
                                          ("--compile=maybe", "expects a bool"),
                                          ("--batch_size", "--key=value")])
def test_wrong_types(arg, expected):
    with pytest.raises(ValueError, match=expected):
        configure(defaults(), [arg])


def test_config_file(tmp_path):
    f = tmp_path / "cfg.py"
    f.write_text("batch_size = 64\nlearning_rate = 1e-3\nimport math\n")
    ns = defaults()
    configure(ns, [str(f), "--batch_size=8"], verbose=False)  # later arguments win
    assert ns["batch_size"] == 8 and ns["learning_rate"] == 1e-3
    f.write_text("batch_sizee = 64\n")
    with pytest.raises(ValueError, match="did you mean 'batch_size'"):
        configure(defaults(), [str(f)])
    f.write_text("batch_size = 'x'\n")
    with pytest.raises(ValueError, match="expects an int"):
        configure(defaults(), [str(f)])


def test_missing_config_file():
    with pytest.raises(ValueError, match="not found"):
        configure(defaults(), ["config/nope.py"])
