"""The N2D2 INI dialect at the syntax level: each rule, each error with its line."""
import os
import textwrap

import pytest

import irc
from irc.frontends.n2d2.syntax import parse_ini
from conftest import FIXTURES

CORPUS = os.environ.get("IRC_N2D2_CORPUS", os.path.join(FIXTURES, "n2d2_corpus"))


def ini(tmp_path, text: str, name: str = "m.ini"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return parse_ini(str(path))


def test_continuation_joins_with_nothing_inserted(tmp_path):
    doc = ini(tmp_path, """
        [s]
        a=1 0 \\
        1 1
        b=1 0\\
        1 1
        c=x \\ ; a backslash before a comment does not continue
        d=y
        """)
    assert doc.value("s", "a") == "1 0 1 1"
    assert doc.value("s", "b") == "1 01 1"
    assert doc.value("s", "c") == "x \\"
    assert doc.value("s", "d") == "y"


def test_comments_anywhere_outside_quotes(tmp_path):
    doc = ini(tmp_path, """
        ; a comment
        # another
        [s] ; comment after a header
        a=a # c
        b="x ; y" ; c
        c=1;2
        """)
    assert doc.value("s", "a") == "a"
    assert doc.value("s", "b") == "x ; y"
    assert doc.value("s", "c") == "1"


def test_unbalanced_quote_is_an_error_with_its_line(tmp_path):
    with pytest.raises(irc.IRCError, match=r"m.ini:3.*quote"):
        ini(tmp_path, """
            [s]
            a=1
            b="oops
            """)


def test_missing_equal_sign_and_duplicate_section(tmp_path):
    with pytest.raises(irc.IRCError, match=r"m.ini:2.*missing value"):
        ini(tmp_path, "[s]\nnot a property\n")
    with pytest.raises(irc.IRCError, match=r"m.ini:3.*\[s\] is defined twice"):
        ini(tmp_path, "[s]\na=1\n[s]\n")


def test_inheritance_and_override_order(tmp_path):
    doc = ini(tmp_path, """
        [base]
        X=1
        Y=2
        [child] base
        Y=3
        [nospace]base
        Z=4
        """)
    assert doc.value("child", "X") == "1" and doc.value("child", "Y") == "3"
    assert doc.value("nospace", "Y") == "2" and doc.value("nospace", "Z") == "4"
    assert doc.sections["child"].bases == ["base"]
    with pytest.raises(irc.IRCError, match=r"m.ini:1.*\[missing\]"):
        ini(tmp_path, "[a] missing\n")


def test_global_section_and_variables(tmp_path):
    doc = ini(tmp_path, """
        $SIZE=24
        DefaultModel=Frame
        [sp]
        SizeX=${SIZE}
        $LOCAL=3
        Width=$(${SIZE} + ${LOCAL})
        Name=${SECTION_NAME}
        Unknown=${NOPE}
        [next]
        Prev=${PREV_SECTION_NAME}
        """)
    assert doc.value("", "DefaultModel") == "Frame"
    assert doc.get_int("sp", "SizeX") == 24
    assert doc.get_int("sp", "Width") == 27
    assert doc.value("sp", "Name") == "sp"
    assert doc.value("sp", "Unknown") == "${NOPE}"
    assert doc.value("next", "Prev") == "sp"


def test_references_lazy_recursive_and_to_computed_properties(tmp_path):
    doc = ini(tmp_path, """
        [sp]
        SizeX=32
        Alias=[sp]SizeX
        [conv1]
        NbOutputs=[sp]Alias
        Later=[conv1]_NbOutputs
        Text=[not a section]x
        Bad=[sp]Nope
        """)
    assert doc.value("conv1", "NbOutputs") == "32"
    assert doc.value("conv1", "Text") == "[not a section]x"
    doc.set("conv1", "_NbOutputs", "16")
    assert doc.value("conv1", "Later") == "16"
    with pytest.raises(irc.IRCError, match=r"m.ini:8.*\[sp\] has no property Nope"):
        doc.value("conv1", "Bad")


def test_expressions_are_arithmetic_only(tmp_path):
    marker = tmp_path / "pwned"
    doc = ini(tmp_path, f"""
        $ALPHA=0.5
        $L=8
        [s]
        a=$(int(64 * ${{ALPHA}}))
        b=$(${{L}}**(-1.0/(2*2-2)) if ${{L}} > 0 else 1.0)
        c=$(max(3, 4) + abs(-2) // 1)
        evil=$(__import__('os').system('touch {marker}'))
        dunder=$((1).__class__)
        """)
    assert doc.get_int("s", "a") == 32
    assert doc.get_float("s", "b") == pytest.approx(8 ** -0.5)
    assert doc.get_int("s", "c") == 6
    for key in ("evil", "dunder"):
        with pytest.raises(irc.IRCError, match="cannot evaluate"):
            doc.value("s", key)
    assert not marker.exists()


def test_typed_getters_follow_n2d2(tmp_path):
    doc = ini(tmp_path, """
        [s]
        period=1,000,000
        neg=-1
        flag=1
        word=true
        dims=5 3
        spread="0.67; 20%"
        half=1,5
        """)
    assert doc.get_uint("s", "period") == 1_000_000
    assert doc.get_float("s", "period") == 1e6
    assert doc.get_int("s", "neg") == -1
    assert doc.get_bool("s", "flag") is True
    assert doc.get_ints("s", "dims") == [5, 3]
    assert doc.get_spread("s", "spread") == (0.67, 20.0, True)
    assert doc.get_int("s", "missing", 7) == 7
    with pytest.raises(irc.IRCError, match=r"m.ini:3.*non-negative"):
        doc.get_uint("s", "neg")
    with pytest.raises(irc.IRCError, match="0 or 1"):
        doc.get_bool("s", "word")
    with pytest.raises(irc.IRCError, match="an integer"):
        doc.get_int("s", "half")
    with pytest.raises(irc.IRCError, match=r"\[s\] needs absent"):
        doc.get_int("s", "absent")


def test_paths_expand_environment_variables(tmp_path):
    path = tmp_path / "m.ini"
    path.write_text("[database]\nDataPath=${DATA}/mnist\nLocal=rel/x\n")
    doc = parse_ini(str(path), env={"DATA": "/data"})
    assert doc.get_path("database", "DataPath") == "/data/mnist"
    assert doc.get_path("database", "Local") == os.path.join(str(tmp_path), "rel/x")
    assert doc.value("database", "DataPath") == "${DATA}/mnist"  # values are not env-expanded


def test_template_language(tmp_path):
    (tmp_path / "inc.tpl").write_text("[{{SECTION_NAME}}_inc]\nFrom=include\n")
    (tmp_path / "blk.ini.tpl").write_text(textwrap.dedent("""
        [{{SECTION_NAME}}_a]
        Input={{INPUT}}
        {% if EXTRA exists %}Extra={{EXTRA}}{% else %}Extra=none{% endif %}
        {% if MODE == fast %}Mode=F{% endif %}{% if MODE != fast %}Mode=S{% endif %}
        {% if MISSING not_exists %}Missing=yes{% endif %}
        {% for i in range(2, 4) %}
        [{{SECTION_NAME}}_loop{{i}}]
        Index={{i}}
        {% endfor %}
        {% block LAYERS %}
        [{{SECTION_NAME}}_layer{{#}}]
        Size={{.SIZE}}
        {% endblock %}
        {% set INPUT %}{{SECTION_NAME}}_a{% endset %}
        [{{SECTION_NAME}}_b]
        Input={{INPUT}}
        {% include inc.tpl %}
        """).lstrip())
    doc = ini(tmp_path, """
        [blk@blk.ini.tpl]
        INPUT=data
        MODE=fast
        LAYERS=2
        LAYERS[0].SIZE=8
        LAYERS[1].SIZE=16
        [after]
        X=1
        """)
    assert doc.value("blk_a", "Input") == "data"
    assert doc.value("blk_a", "Extra") == "none"
    assert doc.value("blk_a", "Mode") == "F"
    assert doc.value("blk_a", "Missing") == "yes"
    assert [doc.get_int(f"blk_loop{i}", "Index") for i in (2, 3)] == [2, 3]
    assert [doc.get_int(f"blk_layer{i}", "Size") for i in (0, 1)] == [8, 16]
    assert doc.value("blk_b", "Input") == "blk_a"
    assert doc.value("blk_inc", "From") == "include"
    assert doc.value("after", "X") == "1"
    assert doc.sections["blk_a"].parent == "blk"


def test_template_errors_name_the_template(tmp_path):
    (tmp_path / "bad.ini.tpl").write_text("[x]\nA={{UNDEFINED}}\n")
    with pytest.raises(irc.IRCError, match=r"bad.ini.tpl.*UNDEFINED"):
        ini(tmp_path, "[t@bad.ini.tpl]\nK=1\n")
    with pytest.raises(irc.IRCError, match="template 'nowhere.tpl' not found"):
        ini(tmp_path, "[t@nowhere.tpl]\n")


def test_real_resnet18_expands_its_blocks():
    doc = parse_ini(os.path.join(CORPUS, "ResNet-18.ini"))
    types = [doc.value(s, "Type") for s in doc.sections if s and doc.has_key(s, "Input") and doc.has_key(s, "Type")]
    assert types.count("ElemWise") == 8       # eight residual blocks
    assert types.count("Conv") == 1 + 8 * 2 + 4  # stem, two per block, four PROJECTION_SHORTCUT blocks
    assert doc.value("conv5.1_3x3_1", "NbOutputs") == "512"
    assert doc.value("conv3.1_sum", "Input") == "conv3.1_3x3_2,conv3.1_1x1_proj"
