"""GSM8K answer extraction, normalisation and the training-response format: golden cases."""

import pytest

from lorabench.tasks.gsm8k import accuracy, extract_answer, normalize_number, to_strict_format

# (completion, strict answer, flexible answer)
GOLDEN = [
    ("#### 18", "18", "18"),
    ("She makes 9 * 2 = $18 every day.\n#### 18", "18", "18"),
    ("#### 1,234", "1234", "1234"),
    ("#### $1,234.50", "1234.5", "1234.5"),
    ("#### -5", "-5", "-5"),
    ("#### 3.75", "3.75", "3.75"),
    ("#### 18.00", "18", "18"),
    ("#### 42.", "42", "42"),
    ("####18", "18", "18"),
    ("#### $ 25", "25", "25"),
    ("#### 0", "0", "0"),
    ("#### -0.0", "0", "0"),
    ("The answer is 42.", None, "42"),
    ("The answer is: 1,000,000", None, "1000000"),
    ("no number here", None, None),
    ("", None, None),
    ("#### ", None, None),
    ("#### unknown, maybe 7", None, "7"),
    ("First 3, then 4, then 5.", None, "5"),
    ("#### 12\nThen 99 more", "12", "99"),
    ("#### 7 and #### 8", "7", "8"),
    ("10-3=7", None, "7"),
    ("so 10 - 3 = 7, then 4-10", None, "10"),
    ("x = -12", None, "-12"),
    ("It costs $5.", None, "5"),
    ("-$3.50 each", None, "-3.5"),
    ("half of it is .5", None, "0.5"),
    ("1,234,567 people came", None, "1234567"),
    ("50% of 80 is 40%", None, "40"),
    ("He ran 5 km in 2.5 hours.\n#### 5", "5", "5"),
    ("#### 1,000.\nThe answer is: 1000", "1000", "1000"),
    ("The answer is: 18\n#### 20", "20", "20"),
    ("She had 2023 stamps; 5 were left", None, "5"),
]


@pytest.mark.parametrize(("text", "strict", "flexible"), GOLDEN)
def test_extraction_golden(text, strict, flexible):
    assert extract_answer(text, "strict") == strict
    assert extract_answer(text, "flexible") == flexible


def test_strict_is_the_default_mode_and_unknown_modes_fail():
    assert extract_answer("12 then 13") is None
    with pytest.raises(ValueError, match="unknown extraction mode 'last'"):
        extract_answer("#### 1", "last")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("18.00", "18"),
        ("18", "18"),
        ("$1,234.50", "1234.5"),
        ("-0", "0"),
        ("007", "7"),
        ("1,000.", "1000"),
        ("100", "100"),  # not "1E+2"
        ("  42 ", "42"),
        ("-3.250", "-3.25"),
        ("0.1", "0.1"),
        ("abc", None),
        ("", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_normalize_number(raw, canonical):
    assert normalize_number(raw) == canonical


def test_comparison_is_exact_decimal_equality():
    assert normalize_number("18.0") == normalize_number("18")
    assert normalize_number("0.333") != normalize_number("0.3333")
    # Floats would call these equal; exact decimals do not.
    assert normalize_number("0.30000000000000004") != normalize_number("0.3")


def test_accuracy_strict_and_flexible():
    completions = ["#### 18", "The answer is 18", "#### 17", "nothing"]
    golds = ["18", "18.0", "18", "5"]
    assert accuracy(completions, golds, "strict") == 0.25
    assert accuracy(completions, golds, "flexible") == 0.5
    with pytest.raises(ValueError, match="3 completions but 4 gold"):
        accuracy(completions[:3], golds, "strict")
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [], "strict")


@pytest.mark.parametrize(
    ("response", "normalised"),
    [
        ("He pays 20 * $5.50 = $110. The answer is: 110", "He pays 20 * $5.50 = $110.\n#### 110"),
        ("Sold 24.\n#### 72\nThe answer is: 72", "Sold 24.\n#### 72"),
        ("It takes 2/2=<<2/2=1>>1 bolt\n#### 3", "It takes 2/2=1 bolt\n#### 3"),
        ("The answer is: 5", "#### 5"),
        ("no final phrase", "no final phrase"),
        ("So x = 1/2.\nThe answer is: \\frac{1}{2}", "So x = 1/2.\n#### \\frac{1}{2}"),
        ("Total: 1,000 cans.\nThe answer is: 1,000", "Total: 1,000 cans.\n#### 1,000"),
    ],
)
def test_training_responses_end_with_one_strict_answer(response, normalised):
    assert to_strict_format(response) == normalised


def test_normalised_metamath_response_is_read_by_strict_mode():
    response = "Step one 3 + 4 = 7. Step two 7 * 2 = 14. The answer is: 14"
    assert extract_answer(response, "strict") is None
    assert extract_answer(to_strict_format(response), "strict") == "14"
