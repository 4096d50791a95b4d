"""The N2D2 INI dialect at the syntax level: each rule of N2D2's IniParser, each error with its file and line."""
import collections
import glob
import os
import re
import textwrap
import warnings

import pytest

from irc.errors import IRCError
from irc.frontends.n2d2.syntax import IniWarning, parse_ini

CORPUS = os.environ.get("IRC_N2D2_CORPUS",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "n2d2_corpus"))
CORPUS_ENV = {"N2D2_MODELS": CORPUS}       # how N2D2's own scripts run these models


def write(tmp_path, text: str, name: str = "m.ini") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


def ini(tmp_path, text: str, name: str = "m.ini", env=None):
    return parse_ini(write(tmp_path, text, name), env=env)


def raises_at(file: str, line: int, match: str = ""):
    """An IRCError that names file:line and whose text matches ``match`` after it."""
    return pytest.raises(IRCError, match=rf"{re.escape(file)}:{line}: (?s:.*){match}")


# ---------------------------------------------------------------- lines
def test_continuation_joins_with_nothing_inserted(tmp_path):
    lines = [
        "[s]",
        "spaced=1 0 \\", "1 1",
        "glued=1 0\\", "1 1",
        "rows=1 0 0 \\", "0 1 0 \\", "0 0 1",
        "space_after=x \\  ",                          # the backslash is not the last character
        "comment_after=y \\ ; nor here",
        "next=z",
    ]
    doc = ini(tmp_path, "\n".join(lines) + "\n")
    assert doc.value("s", "spaced") == "1 0 1 1"
    assert doc.value("s", "glued") == "1 01 1"
    assert doc.get_ints("s", "rows") == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert doc.value("s", "space_after") == "x \\"
    assert doc.value("s", "comment_after") == "y \\"
    assert doc.value("s", "next") == "z"
    assert doc.where("s", "rows")[1] == 6           # a joined line is reported at its first line


def test_crlf_breaks_continuation_and_a_final_continuation_is_dropped(tmp_path):
    path = tmp_path / "crlf.ini"
    path.write_bytes(b"[s]\r\na=1 \\\r\nb=2\r\nlast=3 \\")
    doc = parse_ini(str(path))
    assert doc.value("s", "a") == "1 \\"            # the CR is the last character: no continuation
    assert doc.value("s", "b") == "2"
    assert not doc.has_key("s", "last")


def test_bom_is_dropped_on_any_line(tmp_path):
    path = tmp_path / "bom.ini"
    path.write_bytes("\ufeff[s]\n\ufeffa=1\n".encode())
    assert parse_ini(str(path)).value("s", "a") == "1"


def test_comments_anywhere_outside_quotes(tmp_path):
    doc = ini(tmp_path, """
        ; a comment
        # another
        [s] ; after a header
        hash=a # c
        semi=1;2
        quoted="x ; y # z" ; c
        inner=a "b;c" d ; c
        two="x" "y"
        empty=
        eq=a=b
        spaced key  =   v
        """)
    assert doc.value("s", "hash") == "a"
    assert doc.value("s", "semi") == "1"
    assert doc.value("s", "quoted") == "x ; y # z"
    assert doc.value("s", "inner") == 'a "b;c" d'    # quotes are kept unless they wrap the whole value
    assert doc.value("s", "two") == 'x" "y'          # N2D2 strips the first and the last character
    assert doc.value("s", "empty") == ""
    assert doc.value("s", "eq") == "a=b"
    assert doc.keys("s") == ["hash", "semi", "quoted", "inner", "two", "empty", "eq", "spaced key"]
    assert doc.value("s", "spaced key") == "v"


def test_unclosed_quote_is_an_error_at_its_line(tmp_path):
    path = write(tmp_path, """
        [s]
        a=1
        b="oops ; c
        """)
    with raises_at(path, 3, "quote is never closed"):
        parse_ini(path)


def test_line_without_equal_sign_is_an_error_at_its_line(tmp_path):
    path = write(tmp_path, "[s]\na=1\nnot a property\n")
    with raises_at(path, 3, "missing value for property 'not a property'"):
        parse_ini(path)


# ---------------------------------------------------------------- sections
def test_inheritance_copies_bases_first_base_wins_own_lines_override(tmp_path):
    doc = ini(tmp_path, """
        [a]
        X=a
        Y=a
        [b]
        Y=b
        Z=b
        [child] a	b
        Z=own
        W=own
        [relu0]a
        """)
    assert doc.sections["child"].bases == ["a", "b"]
    assert [doc.value("child", k) for k in ("X", "Y", "Z", "W")] == ["a", "a", "own", "own"]
    assert doc.keys("child") == ["X", "Y", "Z", "W"]
    assert doc.sections["relu0"].bases == ["a"] and doc.value("relu0", "Y") == "a"
    assert doc.where("child", "X")[1] == 2           # an inherited property keeps its own line
    assert list(doc.sections) == ["", "a", "b", "child", "relu0"]


def test_sections_and_keys_are_case_sensitive(tmp_path):
    doc = ini(tmp_path, "[Conv]\nType=1\n[conv]\ntype=2\n")
    assert doc.value("Conv", "Type") == "1" and doc.value("conv", "type") == "2"
    assert not doc.has_key("conv", "Type")


def test_section_errors_name_their_line(tmp_path):
    path = write(tmp_path, "[a]\nX=1\n[b] a missing\n")
    with raises_at(path, 3, r"\[b\] inherits from \[missing\], which is not defined before it"):
        parse_ini(path)
    path = write(tmp_path, "[a]\nX=1\n[b] c\n[c]\n", "later.ini")
    with raises_at(path, 3, r"\[c\]"):
        parse_ini(path)
    path = write(tmp_path, "[s]\na=1\n\n[s]\n", "twice.ini")
    with raises_at(path, 4, r"section \[s\] is defined twice \(first at .*:1\)"):
        parse_ini(path)


def test_a_repeated_key_warns_and_the_last_wins(tmp_path):
    path = write(tmp_path, "[base]\nK=0\n[s] base\nK=1\nK=2\n")
    with pytest.warns(IniWarning, match=r"m.ini:5: \[s\] K is set again \(was '1' at line 4\)"):
        doc = parse_ini(path)
    assert doc.value("s", "K") == "2" and doc.where("s", "K") == (path, 5)
    assert len(doc.warnings) == 1                    # overriding the inherited K=0 is not a warning


def test_global_section_holds_properties_before_any_header(tmp_path):
    doc = ini(tmp_path, """
        DefaultModel=Frame_CUDA
        $SIZE=24
        [sp]
        SizeX=${SIZE}
        """)
    assert list(doc.sections)[0] == "" and doc.has("")
    assert doc.value("", "DefaultModel") == "Frame_CUDA"
    assert doc.keys("") == ["DefaultModel"]
    assert doc.keys("", variables=True) == ["DefaultModel", "$SIZE"]
    assert doc.get_int("sp", "SizeX") == 24


def test_sections_matching_uses_n2d2_wildcards_in_file_order(tmp_path):
    doc = ini(tmp_path, """
        [sp.Transformation-2]
        [sp.OnTheFlyTransformation-1]
        [sp.Transformation_1]
        [conv1.Target]
        [conv1.Target-Top5]
        [conv10.Target]
        [a[1]
        """)
    assert doc.sections_matching("sp.Transformation*") == ["sp.Transformation-2", "sp.Transformation_1"]
    assert doc.sections_matching("sp.*Transformation*") == ["sp.Transformation-2", "sp.OnTheFlyTransformation-1",
                                                            "sp.Transformation_1"]
    assert doc.sections_matching("conv1.Target*") == ["conv1.Target", "conv1.Target-Top5"]
    assert doc.sections_matching("conv?.Target") == ["conv1.Target"]
    assert doc.sections_matching("a[1") == ["a[1"]    # a bracket is literal, as in N2D2's Utils::match


# ---------------------------------------------------------------- references
def test_references_are_resolved_lazily_and_recursively(tmp_path):
    doc = ini(tmp_path, """
        [sp]
        SizeX=32
        Alias=[sp]SizeX
        [conv1]
        NbOutputs=[sp]Alias
        Dims=[sp]SizeX [sp]Alias
        Text=[not a section]x and [0]
        [pool1]
        PoolDims=[conv1]_OutputsWidth [conv1]_OutputsHeight
        Channels=[conv1]_NbOutputs
        """)
    assert doc.value("conv1", "NbOutputs") == "32"
    assert doc.get_ints("conv1", "Dims") == [32, 32]
    assert doc.value("conv1", "Text") == "[not a section]x and [0]"
    path = str(tmp_path / "m.ini")
    with raises_at(path, 10, r"\[conv1\]_NbOutputs: section \[conv1\] has no property '_NbOutputs'"):
        doc.value("pool1", "Channels")               # not computed yet
    doc.set("conv1", "_NbOutputs", 16)               # what N2D2 writes back once conv1 is built
    doc.set("conv1", "_OutputsWidth", 7)
    doc.set("conv1", "_OutputsHeight", 5)
    assert doc.get_uint("pool1", "Channels") == 16
    assert doc.get_ints("pool1", "PoolDims") == [7, 5]


def test_a_reference_to_a_missing_property_is_an_error_at_the_reading_line(tmp_path):
    path = write(tmp_path, "[sp]\nSizeX=1\n[c]\nW=[sp]SizeY\n")
    doc = parse_ini(path)
    with raises_at(path, 4, r"\[sp\]SizeY: section \[sp\] has no property 'SizeY'"):
        doc.value("c", "W")


def test_circular_references_are_an_error(tmp_path):
    path = write(tmp_path, "[a]\nX=[b]Y\n[b]\nY=[a]X\n$V=${V}1\nZ=${V}\n")
    doc = parse_ini(path)
    with raises_at(path, 2, r"circular reference: \[a\]X -> \[b\]Y -> \[a\]X"):
        doc.value("a", "X")
    with raises_at(path, 5, r"circular reference"):
        doc.value("b", "Z")


def test_referenced_values_resolve_in_the_readers_context(tmp_path):
    doc = ini(tmp_path, """
        $SCALE=2
        [a]
        $SCALE=3
        Name=${SECTION_NAME}
        Size=$(10 * ${SCALE})
        [b]
        Name=[a]Name
        Size=[a]Size
        """)
    assert doc.value("a", "Name") == "a" and doc.value("a", "Size") == "30"
    # N2D2 resolves a referenced value with the *reading* section current
    assert doc.value("b", "Name") == "b" and doc.value("b", "Size") == "20"


# ---------------------------------------------------------------- variables
def test_ini_variables(tmp_path):
    doc = ini(tmp_path, """
        $SIZE=24
        $MARGIN=${HALF}${HALF}
        $HALF=4
        [first]
        [sp]
        $SIZE=32
        Local=${SIZE}
        Margin=${MARGIN}
        Name=${SECTION_NAME}
        Prev=${PREV_SECTION_NAME}
        Unknown=${NOPE}/x
        Unclosed=$(1 + 1) ${OOPS
        [other]
        Global=${SIZE}
        """)
    assert doc.value("sp", "Local") == "32"          # the section's own $SIZE first
    assert doc.value("other", "Global") == "24"      # then the global one
    assert doc.value("sp", "Margin") == "44"         # variables are resolved recursively
    assert doc.value("sp", "Name") == "sp"
    assert doc.value("sp", "Prev") == "first"
    assert doc.value("sp", "Unknown") == "${NOPE}/x"
    assert doc.value("sp", "Unclosed") == "$(1 + 1) ${OOPS"   # N2D2 stops there: no arithmetic either


def test_environment_variables_only_in_paths(tmp_path):
    path = write(tmp_path, """
        $LOCAL=/from/ini
        [database]
        DataPath=${DATA}/mnist
        Unset=${UNSET_VARIABLE}/mnist
        Relative=data/x
        FromIni=${LOCAL}/y
        Empty=
        """)
    doc = parse_ini(path, env={"DATA": "/data"})
    assert doc.value("database", "DataPath") == "${DATA}/mnist"    # values are not env-expanded
    assert doc.path("database", "DataPath") == "/data/mnist"
    assert doc.get_path("database", "DataPath") == "/data/mnist"
    assert doc.path("database", "Unset") == "/mnist"
    assert doc.path("database", "Relative") == os.path.join(str(tmp_path), "data/x")
    assert doc.path("database", "FromIni") == "/from/ini/y"
    assert doc.path("database", "Empty") == ""
    assert doc.path("database", "Missing", "default") == "default"
    assert doc.path == path and os.path.basename(doc.path) == "m.ini"   # doc.path is also the file name


# ---------------------------------------------------------------- arithmetic
def test_arithmetic(tmp_path):
    doc = ini(tmp_path, """
        $ALPHA=0.5
        $L=8
        $MARGIN=32
        [s]
        int=$(int(64 * ${ALPHA}))
        floordiv=$(${MARGIN} // 2)
        div=$(${MARGIN} / 2)
        cond=$(${L}**(-1.0/(2*2-2)) if ${L} > 0 else 1.0)
        zero=$(0.0 if ${L} > 0 else 1.0)
        calls=$(max(3, 4) + abs(-2) + min(1, 2) + round(2.6) + int(float(3)))
        compare=$(3 >= 2)
        nested=$((1 + 2) * (3 + 4))
        around=w$(1+1)px and $(2*3)
        unbalanced=$(1 + 2
        mod=$(-7 % 3) $(2 ** 10) $(+5)
        """)
    assert doc.get_int("s", "int") == 32
    assert doc.value("s", "floordiv") == "16"
    assert doc.value("s", "div") == "16.0"            # Python 3's print, as N2D2 runs it
    assert doc.get_float("s", "cond") == pytest.approx(8 ** -0.5)
    assert doc.value("s", "zero") == "0.0"
    assert doc.get_int("s", "calls") == 4 + 2 + 1 + 3 + 3
    assert doc.value("s", "compare") == "True"
    assert doc.value("s", "nested") == "21"
    assert doc.value("s", "around") == "w2px and 6"
    assert doc.value("s", "unbalanced") == "$(1 + 2"
    assert doc.value("s", "mod") == "2 1024 5"


@pytest.mark.parametrize("expression, reason", [
    ("__import__('os').system('touch {marker}')", r"calling __import__\('os'\).system is not allowed"),
    ("__import__('os')", "calling __import__ is not allowed"),
    ("open('{marker}', 'w')", "calling open is not allowed"),
    ("(1).__class__", r"attribute access \(.__class__\)"),
    ("eval('1')", "calling eval is not allowed"),
    ("'a' * 3", "only number literals"),
    ("[1, 2]", "List is not allowed"),
    ("lambda: 1", "Lambda is not allowed"),
    ("SIZE + 1", "unknown name 'SIZE'"),
    ("int(x=1)", "positional arguments only"),
    ("2 ** 10 ** 10", "too large"),
    ("1 / 0", "division by zero"),
    ("1 +", "not a valid expression"),
])
def test_arithmetic_refuses_everything_else(tmp_path, expression, reason):
    marker = tmp_path / "pwned"
    path = write(tmp_path, f"[s]\nok=1\nbad=$({expression.format(marker=marker)})\n")
    doc = parse_ini(path)
    with raises_at(path, 3, rf"cannot evaluate \$\(.*\): .*{reason}"):
        doc.value("s", "bad")
    assert not marker.exists()


# ---------------------------------------------------------------- typed getters
def test_typed_getters_read_like_n2d2(tmp_path):
    doc = ini(tmp_path, """
        [s]
        period=1,000,000
        big=12,345,678.5
        signed=+7
        neg=-1
        exp=1e-3
        flag=1
        off=0
        dims=5 3
        means=103.94 116.78 123.68
        grouped=1,000 2,000
        spread="0.67; 20%"
        absolute="1.19e-5; 1.67e-5"
        plain=0.5
        inputs=conv1,conv2,,x
        """)
    assert doc.get_uint("s", "period") == 1_000_000
    assert doc.get_float("s", "big") == 12_345_678.5
    assert doc.get_int("s", "signed") == 7
    assert doc.get_int("s", "neg") == -1
    assert doc.get_float("s", "exp") == 1e-3
    assert doc.get_bool("s", "flag") is True and doc.get_bool("s", "off") is False
    assert doc.get_ints("s", "dims") == [5, 3]
    assert doc.get_floats("s", "means") == [103.94, 116.78, 123.68]
    assert doc.get_ints("s", "grouped") == [1000, 2000]
    assert doc.get_spread("s", "spread") == (0.67, 20.0, True)
    assert doc.get_spread("s", "absolute") == (1.19e-5, 1.67e-5, False)
    assert doc.get_spread("s", "plain") == (0.5, 0.0, True)
    assert doc.get_str("s", "dims") == "5 3"
    assert doc.get_list("s", "inputs") == ["conv1", "conv2", "", "x"]
    assert doc.get_int("s", "absent", 7) == 7 and doc.get_str("s", "absent", None) is None


@pytest.mark.parametrize("getter, value, message", [
    ("get_int", "3.0", "expected an integer, got '3.0'"),
    ("get_int", "1,00", "expected an integer"),
    ("get_int", "3,3", "expected an integer.*\n  hint: N2D2 separates list items with spaces"),
    ('get_int', '"12 "', "expected an integer, got '12 '"),      # the whole value must be read
    ("get_int", "0x10", "expected an integer"),
    ("get_uint", "-1", r"expected a non-negative integer, got '-1' \(negative\)"),
    ("get_float", "abc", "expected a number"),
    ("get_float", "1e400", r"expected a number, got '1e400' \(out of range\)"),
    ("get_float", "inf", "expected a number"),
    ("get_bool", "true", "expected 0 or 1, got 'true'\n  hint: N2D2 reads booleans as 0 or 1"),
    ("get_bool", "2", "expected 0 or 1"),
    ("get_ints", "3,3", "expected integers separated by spaces"),
    ("get_ints", "1 2x", "expected integers separated by spaces"),
    ("get_floats", "1.5 two", "expected numbers separated by spaces"),
    ("get_spread", '"1; 2; 3"', "'value; mean; spread' form is not supported"),
    ("get_spread", '"1; 20 %"', "bad spread"),
])
def test_typed_getter_errors_name_the_line(tmp_path, getter, value, message):
    path = write(tmp_path, f"[s]\nother=0\nkey={value}\n")
    with raises_at(path, 3, rf"\[s\] key: .*{message}"):
        getattr(parse_ini(path), getter)("s", "key")


def test_a_missing_required_key_names_the_section(tmp_path):
    path = write(tmp_path, "[a]\n[s]\nX=1\n")
    with raises_at(path, 2, r"\[s\] has no NbOutputs\n  hint: add NbOutputs=... to \[s\]"):
        parse_ini(path).get_uint("s", "NbOutputs")


def test_set_writes_like_n2d2_and_is_visible_to_references(tmp_path):
    doc = ini(tmp_path, "[sp]\n[fc]\nSteps=$([sp]_EpochSize * 2)\n")
    doc.set("sp", "_EpochSize", 60000)
    doc.set("sp", "_Mean", 0.5)
    doc.set("sp", "_Flag", True)
    doc.set("new", "_X", "1")
    assert doc.get_int("fc", "Steps") == 120000
    assert doc.value("sp", "_Mean") == "0.500000"    # std::showpoint
    assert doc.value("sp", "_Flag") == "1"
    assert doc.has("new") and doc.where("sp", "_EpochSize") == (doc.sections["sp"].file, 1)


# ---------------------------------------------------------------- read tracking
def test_unread_keys(tmp_path):
    doc = ini(tmp_path, """
        [base]
        Inherited=1
        [conv] base
        $VAR=2
        Type=Conv
        NbOutputs=[conv]Type
        Typo=3
        Mapping.Size=1
        Mapping.Stride=1
        [cfg]
        A=1
        B=2
        """)
    assert doc.unread("conv") == ["Inherited", "Type", "NbOutputs", "Typo", "Mapping.Size", "Mapping.Stride"]
    doc.get_str("conv", "NbOutputs")                 # a reference does not mark what it refers to
    doc.get_int("conv", "Inherited")
    doc.set("conv", "_NbOutputs", 6)
    doc.mark_read("conv", "Mapping.*")
    assert doc.unread("conv") == ["Type", "Typo"]
    assert doc.items("cfg") == {"A": "1", "B": "2"} and doc.unread("cfg") == []


# ---------------------------------------------------------------- templates
TEMPLATE = """\
[{{SECTION_NAME}}_a] conv_def
Input={{INPUT}}
Prev=${PREV_SECTION_NAME}
File={{SECTION_FILE_NAME}}
Size={{SIZE}}
{% if EXTRA exists %}Extra={{EXTRA}}{% else %}Extra=none{% endif %}
{% if MODE == fast %}Mode=F{% else %}Mode=S{% endif %}
{% if MODE != fast %}Slow=1{% endif %}
{% if MISSING not_exists %}Missing=yes{% endif %}
{% for i in range(2) %}
[{{SECTION_NAME}}_r{{i}}]
Index={{i}}
{% endfor %}
{% for i in range(FIRST, 4) %}
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
Parent=${PARENT_SECTION_NAME}
{% include inc.tpl %}
"""


def test_template_language_covers_every_construct(tmp_path):
    (tmp_path / "inc.tpl").write_text("[{{SECTION_NAME}}_inc]\nFrom=include {{MODE}}\n")
    (tmp_path / "blk.ini.tpl").write_text(TEMPLATE)
    doc = ini(tmp_path, """
        $N=8
        [conv_def]
        Type=Conv
        [blk@blk.ini.tpl]
        INPUT=data
        SIZE=$(2 * ${N})
        MODE=fast
        FIRST=2
        LAYERS=2
        LAYERS[0].SIZE=8
        LAYERS[1].SIZE=16
        [after]
        X=${PREV_SECTION_NAME}
        """)
    tpl = str(tmp_path / "blk.ini.tpl")
    assert list(doc.sections) == ["", "conv_def", "blk", "blk_a", "blk_r0", "blk_r1", "blk_loop2", "blk_loop3",
                                  "blk_layer0", "blk_layer1", "blk_b", "blk_inc", "after"]
    a = doc.sections["blk_a"]
    assert (a.bases, a.template, a.parent, a.file, a.line) == (["conv_def"], tpl, "blk", tpl, 1)
    assert doc.sections["blk"].includes == "blk.ini.tpl"
    assert doc.value("blk_a", "Type") == "Conv"       # a generated section inherits from the INI's sections
    assert doc.value("blk_a", "Input") == "data"
    assert doc.value("blk_a", "Prev") == "conv_def"   # PREV_SECTION_NAME skips the including section
    assert doc.value("blk_a", "File") == tpl
    assert doc.value("blk_a", "Size") == "16"         # parameters are the including section's resolved values
    assert doc.value("blk_a", "Extra") == "none"
    assert doc.value("blk_a", "Mode") == "F"
    assert not doc.has_key("blk_a", "Slow")
    assert doc.value("blk_a", "Missing") == "yes"
    assert [doc.get_int(f"blk_r{i}", "Index") for i in (0, 1)] == [0, 1]
    assert [doc.get_int(f"blk_loop{i}", "Index") for i in (2, 3)] == [2, 3]
    assert [doc.get_int(f"blk_layer{i}", "Size") for i in (0, 1)] == [8, 16]
    assert doc.value("blk_b", "Input") == "blk_a"
    assert doc.value("blk_b", "Parent") == "blk"
    assert "$PARENT_SECTION_NAME" not in doc.keys("blk_b")          # hidden, like N2D2's
    assert doc.value("blk_inc", "From") == "include fast"
    assert doc.value("after", "X") == "blk_inc"
    assert doc.where("blk_layer1", "Size") == (tpl, 20)             # properties point into the template
    assert doc.where("blk_inc", "From") == (str(tmp_path / "inc.tpl"), 2)


def test_else_is_a_second_if_evaluated_after_the_first_branch(tmp_path):
    # N2D2 turns {% else %} into `if not ...` tested after the first branch has rendered
    (tmp_path / "t.ini.tpl").write_text(
        "[{{SECTION_NAME}}_x]\n{% if V == 1 %}{% set V %}2{% endset %}A=1\n{% else %}B=1\n{% endif %}")
    doc = ini(tmp_path, "[t@t.ini.tpl]\nV=1\n")
    assert doc.keys("t_x") == ["A", "B"]


@pytest.mark.parametrize("template, line, message", [
    ("[x]\nA={{UNDEFINED}}\n", 2, r"undefined template variable \{\{UNDEFINED\}\}"),
    ("[x]\nA={{ K }}\n", 2, r"undefined template variable \{\{ K \}\}.*\n  hint: names are exact"),
    ("[x]\n\n{% if K exists %}\nA=1\n", 3, r"\{% if %\} is never closed by \{% endif %\}"),
    ("[x]\n{% endfor %}\n", 2, r"\{% endfor %\} without a matching opening statement"),
    ("[x]\n{% while K %}\n", 2, r"unknown template control \{% while %\}"),
    ("[x]\n{% for i in K %}{% endfor %}\n", 2, r"expected \{% for VAR in range"),
    ("[x]\n{% for i in range(K) %}{% endfor %}\n", 2, r"unreadable loop range value 'one'"),
    ("[x]\n{% block B %}{% endblock %}\n", 2, r"undefined variable B in a block statement"),
    ("[x]\n{% include nowhere.tpl %}\n", 2, r"included template 'nowhere.tpl' not found"),
    ("[x]\nA={{K}\n", 2, r"\{\{ is never closed by \}\}"),
    ("[x]\nA=1\n\nnot a property\n", 4, r"missing value for property 'not a property'"),
    ("[t]\n", 1, r"section \[t\] is defined twice"),
])
def test_template_errors_name_the_template_line_and_the_including_section(tmp_path, template, line, message):
    (tmp_path / "bad.ini.tpl").write_text(template)
    path = write(tmp_path, "[a]\n[t@bad.ini.tpl]\nK=one\n")
    with raises_at(str(tmp_path / "bad.ini.tpl"), line, message):
        try:
            parse_ini(path)
        except IRCError as e:
            assert f"in the template included by [t] at {path}:2" in str(e)
            raise


def test_a_read_error_in_a_generated_section_names_its_block(tmp_path):
    (tmp_path / "blk.ini.tpl").write_text("[{{SECTION_NAME}}_conv]\nNbOutputs=$([sp]_Missing * {{N}})\n")
    doc = ini(tmp_path, "[sp]\n[b1@blk.ini.tpl]\nN=2\n[b2@blk.ini.tpl]\nN=4\n")
    with raises_at(str(tmp_path / "blk.ini.tpl"), 2, r"section \[sp\] has no property '_Missing' "
                   r"\(in \[b2_conv\], from the template included by \[b2\]\)"):
        doc.value("b2_conv", "NbOutputs")
    doc.set("sp", "_Missing", "x")
    with raises_at(str(tmp_path / "blk.ini.tpl"), 2, r"cannot evaluate \$\(x \* 4\): .*included by \[b2\]"):
        doc.value("b2_conv", "NbOutputs")


def test_missing_template_is_an_error_at_the_including_header(tmp_path):
    path = write(tmp_path, "[a]\n[t@${MODELS}/nowhere.ini.tpl]\nK=1\n[b]\n")
    with raises_at(path, 2, r"template '\$\{MODELS\}/nowhere.ini.tpl' not found.*\n  hint: set MODELS"):
        parse_ini(path, env={})
    with raises_at(path, 2, r"template .* not found"):
        parse_ini(path, env={"MODELS": str(tmp_path / "elsewhere")})


def test_template_path_expands_environment_variables(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "blk.ini.tpl").write_text("[{{SECTION_NAME}}_x]\nK={{K}}\n")
    path = write(tmp_path, "[t@${MODELS}/blk.ini.tpl]\nK=1\n")
    assert parse_ini(path, env={"MODELS": str(models)}).value("t_x", "K") == "1"
    # an unset variable leaves "/blk.ini.tpl": irc falls back on the template next to the INI, with a warning
    (tmp_path / "blk.ini.tpl").write_text("[{{SECTION_NAME}}_y]\nK={{K}}\n")
    with pytest.warns(IniWarning, match=r"\$\{MODELS\} is not set; using the template next to the INI file"):
        assert parse_ini(path, env={}).value("t_y", "K") == "1"


def test_real_resnet18_expands_its_blocks():
    with warnings.catch_warnings():
        warnings.simplefilter("error")                # N2D2_MODELS is set: no fallback, no warning
        doc = parse_ini(os.path.join(CORPUS, "ResNet-18.ini"), env=CORPUS_ENV)
    types = collections.Counter(doc.value(s, "Type") for s in doc.sections if doc.has_key(s, "Input"))
    # stem conv, 2 per block x 8 blocks, a 1x1 projection in the 4 blocks with PROJECTION_SHORTCUT
    assert types == {"Conv": 1 + 2 * 8 + 4, "ElemWise": 8, "Pool": 2, "Fc": 1, "Softmax": 1}
    assert doc.value("conv3.1_sum", "Input") == "conv3.1_3x3_2,conv3.1_1x1_proj"
    assert doc.value("conv3.2_sum", "Input") == "conv3.2_3x3_2,conv3.1_sum"
    assert doc.get_uint("conv5.1_3x3_1", "NbOutputs") == 512
    assert doc.get_uint("conv5.1_3x3_1", "Stride") == 2
    assert doc.get_float("conv2.1_3x3_1", "WeightsFiller.Scaling") == pytest.approx(8 ** -0.5)
    assert doc.value("conv2.1_3x3_1", "ConfigSection") == "common.config"      # inherited from [conv_def]
    assert doc.get_uint("sp.Transformation-2", "Width") == 256                # [sp.Transformation-1]Width
    template = os.path.join(CORPUS, "ResNet-block.ini.tpl")
    assert doc.where("conv3.1_1x1_proj", "NbOutputs") == (template, 23)
    assert doc.sections["conv3.1_1x1_proj"].parent == "conv3.1"


@pytest.mark.parametrize("name, blocks, convs", [
    ("ResNet-11.ini", 4, 1 + 2 * 4 + 4),
    ("ResNet-18.ini", 8, 1 + 2 * 8 + 4),
    ("ResNet-34.ini", 16, 1 + 2 * 16 + 4),
    ("ResNet-50.ini", 16, 1 + 3 * 16 + 4),
    ("ResNet-50-BN.ini", 16, 1 + 3 * 16 + 4),
    ("ResNet-18-BN.ini", 8, 1 + 2 * 8 + 4),
    ("MobileNet_v2.ini", 17, 1 + 3 * 17 + 1),
])
def test_corpus_templates_expand(name, blocks, convs):
    doc = parse_ini(os.path.join(CORPUS, name), env=CORPUS_ENV)
    including = [s for s in doc.sections.values() if s.includes]
    assert len(including) == blocks
    layers = [s for s in doc.sections if doc.has_key(s, "Input")]
    assert collections.Counter(doc.value(s, "Type") for s in layers)["Conv"] == convs
    generated = [s for s in doc.sections.values() if s.template]
    assert {s.parent for s in generated} == {s.name for s in including}


# ---------------------------------------------------------------- the corpus
def corpus_files() -> list[str]:
    return sorted(glob.glob(os.path.join(CORPUS, "**", "*.ini"), recursive=True))


def test_corpus_is_complete():
    assert len(corpus_files()) == 54
    assert len(glob.glob(os.path.join(CORPUS, "*.ini.tpl"))) == 5


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: os.path.relpath(p, CORPUS))
def test_corpus_file_parses_or_says_why(path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IniWarning)
            doc = parse_ini(path)
    except IRCError as e:
        assert str(e).strip()
        return
    assert doc.has("") and len(doc.sections) > 1


def test_every_corpus_file_parses_and_its_values_resolve():
    """All 54 parse; every value resolves except references to properties N2D2 computes while building."""
    unresolved = collections.Counter()
    for path in corpus_files():
        doc = parse_ini(path, env=CORPUS_ENV)
        for section in doc.sections:
            for key in doc.keys(section):
                try:
                    doc.value(section, key)
                except IRCError as e:
                    assert "has no property '_" in e.message, e
                    unresolved[e.message.split(":")[0].split("]")[1]] += 1
    assert set(unresolved) <= {"_EpochSize", "_OutputsWidth", "_OutputsHeight", "_GlobalValue.mean",
                               "_GlobalValue.stdDev"}


def test_missing_ini_file():
    with pytest.raises(IRCError, match="nowhere.ini: INI file not found"):
        parse_ini("nowhere.ini")


# ------------------------------------------------------- bounded work
# A model file is untrusted input: whatever it asks for, reading it ends quickly, with an IRCError at its line.
def _chain(name: str, first: str, step: str, n: int) -> str:
    return "\n".join([f"${name}0={first}"] + [f"${name}{i}=" + step.format(p=f"${{{name}{i - 1}}}")
                                              for i in range(1, n)]) + "\n"


@pytest.mark.parametrize("text, match", [
    ("[s]\nK=$(((3**30000)*(3**30000))*((3**30000)*(3**30000)))\n", r"is too large"),
    ("[s]\nK=$(round(1, -10**9))\n", r"round\(\) to -1000000000 digits is out of range"),
    ("[s]\nK=$(" + "1+" * 6000 + "1)\n", r"longer than 10,000 characters"),
    (_chain("A", "ab", "{p}{p}", 40) + "[s]\nK=${A39}\n", r"longer than 1,000,000 characters"),
    (_chain("V", "1", "{p}", 250) + "[s]\nK=${V249}\n", r"nested more than 100 deep"),
])
def test_runaway_values_are_refused_at_their_line(tmp_path, text, match):
    doc = ini(tmp_path, text)
    with pytest.raises(IRCError, match=match):
        doc.value("s", "K")


def test_a_value_read_many_times_over_is_resolved_once(tmp_path):
    """Each level reads the one below three times: 3**60 reads unless each is resolved once per value."""
    doc = ini(tmp_path, _chain("B", "1", "$({p}+{p}-{p})", 60) + "[s]\nK=${B59}\n")
    assert doc.value("s", "K") == "1"


@pytest.mark.parametrize("template, match", [
    ("{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}"
     "{% endfor %}{% endfor %}{% endfor %}", r"more than 1,000,000 loop iterations"),
    ("{% set X %}ab{% endset %}" + "{% set X %}{{X}}{{X}}{% endset %}" * 40, r"more than 2,000,000 characters"),
    ("{% if A exists %}" * 1000 + "{% endif %}" * 1000, r"nests its statements too deeply"),
])
def test_runaway_templates_are_refused(tmp_path, template, match):
    (tmp_path / "t.ini.tpl").write_text("[{{SECTION_NAME}}_x]\n" + template + "\n")
    with pytest.raises(IRCError, match=match):
        ini(tmp_path, "[blk@t.ini.tpl]\nA=1\n")


def test_an_include_diamond_is_bounded(tmp_path):
    """Six files, each including the next ten times: a million leaves, refused once the text outgrows the limit."""
    for i in range(6):
        body = "K=" + "1" * 100 + "\n" if i == 5 else "".join(f"{{% include t{i + 1}.tpl %}}" for _ in range(10))
        (tmp_path / f"t{i}.tpl").write_text(body)
    (tmp_path / "top.ini.tpl").write_text("[{{SECTION_NAME}}_x]\n{% include t0.tpl %}\n")
    with pytest.raises(IRCError, match=r"more than 2,000,000 characters"):
        ini(tmp_path, "[blk@top.ini.tpl]\nA=1\n")
