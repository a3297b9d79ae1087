"""Find graded responses that try to steer the judge, so their verdicts go to a person.

A response is data for the judge, and the judge prompt says so (grading.judges.prompts); this module
is the second line: it flags responses that *address the grader* — instructions to the
grader, claims that criteria are met, forged verdict JSON, imitations of the prompt's fences
or of chat roles, "ignore previous instructions" and its translations, text hidden in
invisible characters — and bare "master key" replies (":", "Thought process:", "Solution")
that are known to fool LLM judges. A flag changes no verdict; it marks the response's judge
verdicts for human review and lists them for adjudication.

Rules, not a model: every flag names its rule, says why in plain words and quotes the text
that tripped it, and the same text always gives the same flags. No maintained offline
library fits: the ones on PyPI either load a classifier from a model hub (llm-guard's
prompt-injection scanner, pytector) or call a hosted service (rebuff), and the small
regex-only packages target chat inputs ("reveal your system prompt"), not grader-directed
text (verdict claims, forged judge JSON, fence forgery, master keys).

Empty and whitespace-only responses are not this module's business: the engine grades them
"not met" without a judge call (`is_empty`).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import itertools
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import re2

DETECTOR = "assay.injection/1"
MAX_SCAN = 200_000  # characters scanned; a longer response is scanned up to here

# --- Empty responses ------------------------------------------------------------------


def is_empty(text: str | None) -> bool:
    """None, "", or only whitespace and invisible characters (zero-width spaces, BOM...)."""
    if text is None:
        return True
    # Stops at the first visible character: every graded response passes through here.
    return not any(not ch.isspace() and unicodedata.category(ch) not in ("Cf", "Cc") for ch in text)


# --- Findings -------------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    rule: str
    why: str
    excerpt: str

    def as_dict(self) -> dict:
        return {"rule": self.rule, "why": self.why, "excerpt": self.excerpt}

    def __str__(self) -> str:
        return f"{self.why}: “{self.excerpt}”" if self.excerpt else self.why


@dataclass(frozen=True)
class Finding:
    reasons: tuple[Reason, ...]

    @property
    def rules(self) -> list[str]:
        return [r.rule for r in self.reasons]

    def as_list(self) -> list[dict]:
        return [r.as_dict() for r in self.reasons]

    def summary(self) -> str:
        return "; ".join(str(r) for r in self.reasons)


# --- Normalising: what a person would read, whatever the bytes ------------------------

# Invisible characters that hide text from people but not from a model's tokenizer. ZWJ and
# ZWNJ are left out: emoji sequences and Persian or Indic scripts use them honestly.
INVISIBLE = frozenset(
    "\u00ad\u180e\u200b\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff"
)
TAG_CHARS = range(0xE0000, 0xE0080)  # "ASCII smuggling": Unicode tags mirror ASCII
TAG_RUN = re.compile("[\U000e0000-\U000e007f]+")
DROP_INVISIBLE = dict.fromkeys(map(ord, INVISIBLE))
HIDDEN = re.compile("[" + "".join(sorted(INVISIBLE)) + "\U000e0000-\U000e007f]")

# Latin look-alikes from Cyrillic and Greek, folded so "іgnore prevіous" reads as English.
CONFUSABLES = str.maketrans(
    {
        "а": "a",
        "в": "b",
        "е": "e",
        "ё": "e",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "с": "c",
        "т": "t",
        "у": "y",
        "х": "x",
        "і": "i",
        "ї": "i",
        "ј": "j",
        "ѕ": "s",
        "ԁ": "d",
        "ɡ": "g",
        "α": "a",
        "ο": "o",
        "ρ": "p",
        "ε": "e",
        "ι": "i",
        "κ": "k",
        "ν": "v",
        "τ": "t",
        "υ": "u",
    }
)


@dataclass(frozen=True)
class Views:
    plain: str  # NFKC, invisible characters removed, lower-cased, spaces collapsed
    folded: str  # plain with Latin look-alikes folded to Latin (for the English rules)
    lines: str  # like plain but keeping line breaks (for line-start rules)
    hidden: str  # text spelled in Unicode tag characters, decoded


BLANKS = re.compile(r"[ \t]+")


def _one_line(line: str) -> str:
    """A line with its runs of spaces and tabs made one space, stripped (most lines have no
    run to rewrite)."""
    if "\t" in line or "  " in line:
        line = BLANKS.sub(" ", line)
    return line.strip()


def views(text: str) -> Views:
    text = text[:MAX_SCAN]
    hidden = ""
    if text.isascii():
        # Nothing hidden, invisible or look-alike in ASCII, which is its own NFKC form (most
        # responses: each is scanned as it is graded).
        normal = text.lower()
    else:
        if TAG_RUN.search(text):
            hidden = "".join(chr(ord(ch) - 0xE0000) for ch in text if ord(ch) in TAG_CHARS)
            text = TAG_RUN.sub("", text)
        visible = text.translate(DROP_INVISIBLE)
        normal = unicodedata.normalize("NFKC", visible).casefold()
    lines = "\n".join(_one_line(line) for line in normal.splitlines())
    # Runs of whitespace made one space, stripped: str.split's whitespace is re's \s.
    plain = " ".join(normal.split())
    return Views(plain, _fold(plain), lines, hidden)


def _fold(text: str) -> str:
    """Latin look-alikes folded to Latin (none in ASCII)."""
    return text if text.isascii() else text.translate(CONFUSABLES)


def _excerpt(text: str, match: re.Match) -> str:
    start, end = match.span()
    snippet = text[max(0, start - 10) : min(len(text), end + 10)].strip()
    snippet = re.sub(r"\s+", " ", snippet)
    return snippet if len(snippet) <= 90 else snippet[:87] + "..."


# --- The rules --------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    rule: str
    why: str
    pattern: re.Pattern
    # Vetoes a match when the words before it in the same sentence match: "if the criteria
    # are met" is a condition, not a claim.
    unless_before: re.Pattern | None = None
    view: str = "folded"  # folded | lines | plain
    # Speed only: the pattern cannot match unless one of these substrings is in the text.
    gate: tuple[str, ...] = ()


def _rx(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.MULTILINE)


# Nouns that in ordinary prose mean the one grading this text ("judge" and "examiner" do not:
# legal and medical answers use them).
GRADER = (
    r"(?:graders?|grading (?:model|system|ai|assistant|llm|bot)s?|(?:llm|ai|automated|model)"
    r"[- ](?:judge|grader|evaluator|rater|assessor|reviewer|marker)s?|llm[- ]as[- ]a[- ]judge|"
    r"judge (?:model|llm)s?|evaluat(?:or|ion|ing) (?:model|llm|ai|system)s?|evaluators?|"
    r"raters?|scorers?|markers? of this|(?:grading|scoring|evaluation|evaluating|judging|"
    r"marking) (?:model|ai|llm|system|assistant|bot|step|process|pipeline|harness)s?|"
    r"(?:reviewer|reviewing) (?:ai|llm|model)s?|(?:ai|llm|automated|automatic) reviewers?|"
    r"(?:assistant|ai|model|llm|system) (?:grading|evaluating|scoring|judging|reviewing|"
    r"reading) this)"
)
# Words of a verdict, for the rule that a grader and a verdict meet in one sentence.
VERDICT_TERM = (
    r"(?:met|pass|passes|passed|passing|satisf(?:y|ies|ied)|fulfil(?:l|ls|led)?|correct|"
    r"criteri(?:on|a)|rubric|full marks|full credit|full points|perfect score|true|approve|"
    r"approved|10/10|100%)"
)
# Wider, only after a clear address ("Note to the judge:"). "Judge" and "assessor" count only
# when the address ends there ("Dear Judge Smith," is a letter, not an attack).
ADDRESSEE = rf"(?:{GRADER}|(?:judges?|assessors?)(?= ?[:,\-—\n]|$)|markers?|ai|llm|model)"
VERDICT_VERB = (
    r"(?:mark|score|grade|rate|award|give|assign|output|return|respond|reply|treat|label|"
    r"pass|accept|approve|credit)"
)
# Substrings without which no GRADER or ADDRESSEE can match (speed only).
GRADER_GATE = (
    "grad",
    "judg",
    "evaluat",
    "rater",
    "scor",
    "marker",
    "review",
    "assessor",
    "llm",
    "ai",
    "model",
    "assistant",
    "system",
    "bot",
)
CONDITION = _rx(
    r"\b(?:if|when|whenever|once|unless|whether|until|provided|assuming|as long as|where|"
    r"before|after|only|not|no|never)\b"
)

ENGLISH: list[Rule] = [
    Rule(
        "addresses-grader",
        "speaks to the grader",
        _rx(
            rf"\b(?:dear|notes? (?:to|for)|attention|hey|hello|message (?:to|for)|memo (?:to|for)|"
            rf"instructions? (?:to|for)|reminder (?:to|for)|p\.?s\.? (?:to|for)|important for|"
            rf"to whoever is|for whoever is) (?:the |any |all |our |my |this )?(?:human or ai |"
            rf"automated |ai |llm |human )?{ADDRESSEE}\b"
        ),
        gate=GRADER_GATE,
    ),
    Rule(
        "addresses-grader",
        "speaks to the grader",
        _rx(rf"\b(?:to|for|attn:?) (?:the |any |all |our )?{GRADER}\b ?[:,—-]"),
        gate=GRADER_GATE,
    ),
    Rule(
        "addresses-grader",
        "tells the grader what to do",
        _rx(
            rf"\b{GRADER}\b[^.\n]{{0,60}}?\b(?:must|should|shall|please|needs? to|has to|"
            rf"have to|is to|are to|is instructed|is required|will now|can now|may now|ought to)"
            rf"\b[^.\n]{{0,60}}?\b{VERDICT_VERB}"
        ),
        gate=GRADER_GATE,
    ),
    Rule(
        "addresses-grader",
        "tells the grader about the verdict",
        _rx(
            rf"\b{GRADER}\b[^.!?\n]{{0,80}}?\b{VERDICT_TERM}\b|"
            rf"\b{VERDICT_TERM}\b[^.!?\n]{{0,60}}?\b{GRADER}\b"
        ),
        gate=GRADER_GATE,
    ),
    Rule(
        "addresses-grader",
        "speaks to the grader",
        _rx(rf"(?:^|[.!?\n(\[] *)(?:hey |hi |dear |o |attention,? )?(?:the )?{GRADER} ?[,:]"),
        gate=GRADER_GATE,
    ),
    Rule(
        "addresses-grader",
        "speaks to the AI that grades it",
        _rx(
            r"\b(?:ai|llm|llms|language models?|models?|gpt|chatbot|bot)(?: that| which| who)?"
            r"(?: is| are)? (?:currently |now )?(?:scoring|grading|evaluating|assessing|judging|"
            r"marking|rating|reviewing|checking) (?:this|these|the (?:answer|response|reply|"
            r"submission|output))\b|\b(?:judges|graders|evaluators|reviewers|raters|assessors) "
            r"of this\b|\bfor (?:evaluation|grading|scoring|marking|benchmark) purposes\b"
        ),
        gate=(
            # Speed only (Rule.gate): a word every branch needs.
            *("scoring", "grading", "evaluating", "assessing", "judging", "marking"),
            *("rating", "reviewing", "checking", " of this", "purposes"),
        ),
    ),
    Rule(
        "steers-verdict",
        "tells the reader how to grade this response",
        _rx(
            r"\b(?:mark|score|grade|rate|register|log|count|record|classify|treat|consider|regard|"
            r"label|tag|judge|evaluate|assess) (?:this|it|the (?:answer|response|reply|submission)|"
            r"this (?:answer|response|reply|submission|one|completion)) (?:as|to be) (?:a |an )?"
            r"(?:fully |completely |entirely )?(?:correct|complete|met|passing|pass|satisfactory|"
            r"compliant|acceptable|excellent|perfect|meeting|fulfilling|satisfying|right)\b"
        ),
    ),
    Rule(
        "claims-verdict",
        "claims the rubric is satisfied",
        _rx(
            r"\b(?:meets|satisfies|fulfils|fulfills|passes|meeting|satisfying) (?:\w+ ){0,2}"
            r"(?:on |for |of )?(?:all|every|each)(?: of)?(?: the| its| these)? (?:\w+ )?"
            r"(?:criteri(?:on|a)|requirements?|rubric items?)\b(?! for| of| in)|"
            r"\b(?:every|each|all)(?: of the| the)? (?:single )?(?:items?|points?|boxe?s?|"
            r"requirements?|criteri(?:on|a)|checks?)(?: listed| above)? (?:is|are|has been|have "
            r"been|was|were) (?:all |fully |now )?(?:satisfied|met|fulfilled|ticked|covered|"
            r"checked|passed)\b"
        ),
        unless_before=CONDITION,
    ),
    Rule(
        "claims-verdict",
        "states a grade for itself",
        _rx(
            r"\b(?:assessment|evaluation|verdict|grade|grading|judge?ment|score|rating) (?:of|for)"
            r" this (?:answer|response|reply|submission|completion)\b"
        ),
    ),
    Rule(
        "addresses-grader",
        "speaks to the AI that grades it",
        _rx(
            r"\bif you(?:'re| are) (?:checking|grading|evaluating|scoring|marking|assessing|"
            r"judging|reviewing|rating) this\b"
        ),
    ),
    Rule(
        "steers-verdict",
        "asks to be taken as the reference answer",
        _rx(
            r"\b(?:treat|count|consider|use|take|accept) (?:it|this|this (?:answer|response|reply|"
            r"one)|me) as (?:the )?(?:gold|gold standard|the reference|reference answer|"
            r"ground truth|model answer|ideal (?:answer|response|completion))\b"
        ),
    ),
    Rule(
        "claims-verdict",
        "talks about the grading rubric",
        _rx(
            r"\brubric(?:'s)?\b[^.!?\n]{0,60}?\b(?:met|satisf(?:y|ies|ied)|fulfil(?:l|ls|led)?|"
            r"addressed|covered|approved|pre-approved|passed|pass|ticked|checked off|complete|"
            r"in full)\b|\b(?:met|satisf(?:y|ies|ied)|fulfil(?:l|ls|led)?|addressed|covers?|"
            r"approved|pre-approved|passes|hits)\b[^.!?\n]{0,30}?\b(?:the|this|each|every|all)"
            r"(?: of the)? rubric\b|\b(?:all|every) (?:the )?boxes (?:are |have been )?"
            r"(?:ticked|checked)\b"
        ),
    ),
    Rule(
        "steers-verdict",
        "tells the reader how to grade this response",
        _rx(
            r"\b(?:award|give|assign|grant)\b[^.\n]{0,25}?\b\d+ (?:points|marks|stars)\b|"
            r"\bstop reading (?:here|now)\b"
        ),
    ),
    Rule(
        "addresses-grader",
        "leaves a note for the grader",
        _rx(
            r"\b(?:evaluation|grading|scoring|marking|judging|grader|evaluator) (?:guidance|"
            r"guidelines?|notes?|instructions?|policy|rules?|hints?|tips?|remarks?)s? ?[:\-—–]|"
            r"\b(?:automated|automatic|ai|llm) (?:scoring|grading|evaluation|review|marking) ?:|"
            r"\b(?:system|developer|admin|administrator|operator)[- ]?(?:level )?(?:instruction|"
            r"message|note|notice|directive|override|command)s? ?:|"
            r"\bprompt (?:to|for) (?:the )?(?:evaluator|grader|judge|scorer|rater)\b"
        ),
        gate=(
            *("evaluat", "grading", "scoring", "marking", "judging", "grader", "review"),
            *("system", "developer", "admin", "operator", "prompt"),
        ),
    ),
    Rule(
        "steers-verdict",
        "tells the reader how to grade this response",
        _rx(
            r"\b(?:should|must|shall|needs? to|is to|ought to|deserves to|has to) be (?:graded|"
            r"scored|marked|rated|evaluated|judged|assessed|considered|treated|counted|accepted)"
            r" (?:as |to be )?(?:meeting|met|passing|a pass|correct|fully correct|satisfactory|"
            r"satisfying|excellent|perfect|full marks|fulfilling|compliant)\b"
        ),
    ),
    Rule(
        "addresses-grader",
        "leaves a note for the grader",
        _rx(
            r"\b(?:grader|grading|evaluator|judge|rater|llm|ai judge|ai grader)(?:'s)? ?"
            r"(?:note|notes|instructions?|override|message|directive|memo|hint|reminder)\b ?"
            r"(?::|-|—|\n|$)"
        ),
    ),
    Rule(
        "addresses-grader",
        "speaks to the AI that grades it",
        _rx(
            r"\b(?:if|when|since|because|as|while) you(?: are|'re)? (?:an? |the )?(?:ai|llm|"
            r"large language model|language model|gpt|grader|judge|evaluator|assessor|rater|"
            r"model)\b[^.\n]{0,40}?\b(?:read|grad|evaluat|assess|judg|scor|review|rat|mark|"
            r"check)"
        ),
    ),
    Rule(
        "addresses-grader",
        "speaks to the AI that grades it",
        _rx(
            r"\b(?:you|model|ai|assistant|system|llm)(?:,)? (?:who (?:is|are) |that (?:is|are) "
            r"|currently )?(?:grading|evaluating|assessing|judging|scoring|marking|reviewing)"
            r" (?:this|these|the|my) (?:response|answer|reply|output|submission|text|completion)"
        ),
    ),
    Rule(
        "steers-verdict",
        "tells the reader how to grade this response",
        _rx(
            rf"\b{VERDICT_VERB} (?:this|the|my|that|each|every|all)(?: of the| of my)? (?:response|"
            rf"answer|reply|output|submission|completion|criteri(?:on|a)|rubric items?)\b"
            rf"[^.\n]{{0,40}}?\b(?:as|to be|with|at|=|a|an)\b ?(?:fully |completely |all |a "
            rf"|an )?(?:met|pass|passed|passing|correct|true|satisfied|perfect|maximum|highest|"
            rf"10|100|excellent|full marks|full credit|full points)\b"
        ),
    ),
    Rule(
        "steers-verdict",
        "tells the reader how to grade this response",
        _rx(
            r"\b(?:set|mark|make|flip|change|switch|record|output|return|answer|respond with)"
            r" (?:every |each |all |the |with )?(?:\"?criteria_met\"?|criteri(?:on|a)(?:_| )met|"
            r"verdicts?|met flags?)\b[^.\n]{0,30}?(?:to|as|=|:|with)? ?(?:\"?true\"?|met|pass|yes"
            r"|1\b)"
        ),
    ),
    Rule(
        "steers-verdict",
        "asks for full marks",
        _rx(
            r"\b(?:award|give|assign|grant|deserves?|earns?|merits?|warrants?|should get|"
            r"should receive|score)\b[^.\n]{0,30}?\b(?:full|maximum|max|perfect|top|all(?: the)?"
            r"|highest) (?:marks?|points|credit|scores?|grades?|ratings?)\b"
        ),
    ),
    Rule(
        "claims-verdict",
        "claims the rubric is satisfied",
        _rx(
            r"\b(?:this|the|my|above|preceding|present) (?:response|answer|reply|output|"
            r"submission|completion) (?:fully |clearly |completely |therefore |thus |hereby "
            r"|already |successfully |definitely |demonstrably )?(?:meets|satisfies|fulfil?ls|"
            r"passes|complies with|checks off|ticks off) (?:all|every|each|both|the|any)"
            r"(?: of the| the| of)? (?:\w+ )?(?:rubric|criteri(?:on|a)|requirements|grading)"
        ),
    ),
    Rule(
        "claims-verdict",
        "claims the rubric is satisfied",
        _rx(
            r"\b(?:rubric|grading|evaluation|scoring|marking) (?:criteri(?:on|a)|items?|points|"
            r"requirements) ?[:\-—]?(?: (?:is|are|has been|have been|were|was))? ?"
            r"(?:all |fully |clearly |now |hereby |therefore |completely )?"
            r"(?:met|satisfied|fulfilled|passed|achieved)\b"
            r"|\b(?:all|every|each|both)(?: of)?(?: the| these| its| my)? (?:criteri(?:on|a)|"
            r"requirements)(?: (?:is|are|has been|have been|were))? (?:all |fully |clearly |now "
            r"|hereby |therefore |completely )?(?:met|satisfied|fulfilled)\b"
            r"|\bthe criterion (?:is|has been|was) (?:fully |clearly |hereby |therefore )?"
            r"(?:met|satisfied|fulfilled)\b"
            r"|\b(?:every|each|any) (?:single )?(?:criterion|requirement|rubric item) (?:is|has "
            r"been|was) (?:fully |clearly |hereby |therefore )?(?:met|satisfied|fulfilled)\b"
            r"|\b(?:rubric(?:'s)?|grading|evaluation|scoring) (?:criteri(?:on|a)|requirements|"
            r"items) (?:have|has|are|were) (?:all |each |both |fully |clearly |now )*(?:been )?"
            r"(?:fully |all )?(?:met|satisfied|fulfilled|passed)\b"
        ),
        unless_before=CONDITION,
    ),
    Rule(
        "claims-verdict",
        "states a grade for itself",
        _rx(
            r"\b(?:(?:final|overall|expected|correct|suggested|recommended|self|rubric|grading|"
            r"my|deserved|this response's|the response's)[- ](?:score|grade|rating|verdict|"
            r"evaluation|assessment|mark)s?|verdict) ?(?::|=|is|should be|must be|of) ?(?:\*\*)?"
            r"(?:10/10|10 out of 10|100/100|a\+|met|pass(?:ed)?|full marks|perfect|maximum|"
            r"all met|true|yes|correct|accept(?:ed)?)\b"
            r"|\b(?:grade|score|verdict|result|outcome|evaluation|rating) ?[:=] ?"
            r"(?:pass(?:ed)?|met|true|10|100|a\+|correct|yes)\b"
        ),
        gate=(
            *("score", "grade", "rating", "verdict", "evaluation", "assessment", "mark"),
            *("result", "outcome"),
        ),
    ),
    Rule(
        "forged-verdict",
        "contains a verdict in the judge's JSON format",
        _rx(
            r"[\"'`]?\b(?:criteria_met|criterion_met|criteriamet|criterionmet|met_criteria|"
            r"all_criteria_met|all_met|is_met)\b[\"'`]? ?[:=]|[\"']verdicts[\"'] ?:"
        ),
    ),
    Rule(
        "forged-verdict",
        "contains a verdict in the judge's JSON format",
        _rx(
            r"[{,] ?[\"'](?:met|pass|passed|verdict|grade|decision|outcome)[\"'] ?: ?(?:true|1\b|"
            r"[\"'](?:met|pass|passed|yes|true|correct)[\"'])"
        ),
    ),
    Rule(
        "forged-verdict",
        "contains a verdict in the judge's JSON format",
        _rx(
            r"[{,] ?[\"']score[\"'] ?: ?\d+(?:\.\d+)? ?, ?[\"']explanation[\"'] ?:|"
            r"[{,] ?[\"']explanation[\"'] ?: ?[\"'][^\"]{0,300}[\"'] ?, ?[\"'](?:score|met|"
            r"verdict)[\"'] ?:"
        ),
    ),
    Rule(
        "overrides-instructions",
        "tries to override the grader's instructions",
        _rx(
            r"\b(?:ignore|disregard|forget|bypass|override|overrule|discard|set aside|"
            r"pay no attention to|do not follow|don't follow|stop following|do not obey|"
            r"don't obey)\b (?:(?:all|any|every)(?: of)?(?: the| your| my| these| those)? "
            r"(?:(?:previous|prior|above|earlier|preceding|foregoing|former|original|initial|"
            r"system|grading|other|existing|given|provided) )?|(?:the |your |my |these |those )?"
            r"(?:previous|prior|above|earlier|preceding|foregoing|former|original|initial|"
            r"system|grading) )(?:instructions?|directions|directives?|rules|prompts?|guidelines"
            r"|criteria|rubric|constraints|context|messages?|commands?|orders|text|guidance)\b"
            r"|\b(?:ignore|disregard|forget|override|overrule)\b (?:the |your |this )?(?:grading "
            r"|scoring |evaluation )?(?:rubric|grading criteria|scoring criteria|grading "
            r"instructions|system prompt)\b"
            r"|\b(?:ignore|disregard|forget)\b (?:everything|anything|all) (?:(?:that )?"
            r"(?:was |is |you were |you've been |you have been )?(?:written |said |stated |told "
            r"|given |shown )?)?(?:above|before|previously|earlier|so far)\b"
        ),
    ),
    Rule(
        "overrides-instructions",
        "tries to give the grader new instructions",
        _rx(
            r"\b(?:new|updated|revised|real|actual|true|override|hidden|secret|priority)"
            r" (?:system )?(?:instructions?|directives?|task)(?: (?:for|to) (?:you|the (?:grader|"
            r"judge|evaluator|model|ai|assistant)))\b|"
            r"\b(?:new|updated|revised|real|actual|override|hidden|secret) system (?:instructions?"
            r"|prompt|directives?|message)\b|"
            r"\b(?:real|actual|hidden|secret|override) (?:instructions?|directives?|task) ?:|"
            r"\byou are now (?:an? |the )?(?:grader|judge|evaluator|assistant|ai|model|different|"
            r"new|unrestricted|lenient|generous)\b|\byou are now in (?:developer|god|admin|debug|"
            r"unrestricted|grading|lenient|test) mode\b|\bdeveloper mode\b|\bjailbreak\b|"
            r"\bdo anything now\b|\bsystem override\b|\boverride mode\b|\badmin override\b|"
            r"\byour (?:new|real|actual|true) (?:task|instructions?|job) (?:is|are)\b|"
            r"\b(?:end|stop) (?:of )?(?:the )?(?:grading|evaluation) (?:task|instructions)\b"
        ),
        gate=(
            *("instruction", "directive", "task", "system", "you are now", "developer mode"),
            *("jailbreak", "do anything now", "override", "job"),
        ),
    ),
    Rule(
        "forges-fence",
        "imitates the judge prompt's fences",
        _rx(
            r"<<< ?(?:response|criterion|criteria|conversation|reference|system|instructions?)\b|"
            r"\b(?:response|criterion|criteria|conversation|reference) [0-9a-f]{4,} ?>>>|"
            r"\b(?:response|criterion|criteria|conversation|reference) ?>>>"
        ),
        view="lines",
    ),
    Rule(
        "forges-fence",
        "imitates the judge prompt's layout or a chat template",
        _rx(
            r"<\|(?:im_start|im_end|endoftext|system|user|assistant|eot_id|start_header_id|"
            r"end_header_id|begin_of_text)\|>|\[/?inst\]|<</?sys>>|"
            r"</?(?:response|answer|submission|completion|criterion|criteria|rubric|system|"
            r"instructions?|grader|grading|judge|evaluation|user_input|untrusted_input|"
            r"model_response|model_output|graded_text|end_of_response) ?>|"
            r"^[ \-=*#\[(<_~]*(?:end of|end|close|closing|/) ?(?:the )?(?:model(?:'s)? |graded |"
            r"candidate |assistant(?:'s)? )?(?:response|answer|submission|completion)"
            r"(?: to (?:be )?graded?)?(?: block| section| text| fence| here)?[ \-=*#\])>_~.]*$|"
            r"^#+ ?(?:rubric criteri(?:on|a)|response to grade|reference answer written by|"
            r"grader instructions|grading instructions|evaluation instructions)\b"
        ),
        view="lines",
    ),
    Rule(
        "forges-role",
        "pretends to be a system or grader message",
        _rx(
            r"^ ?(?:#+ ?|\*\*|\[|<|\()?(?:system|developer|grader|evaluator|ai judge|llm judge|"
            r"assistant \(grader\)|system message|system prompt|system note|grading system|"
            r"instructions? to (?:the )?(?:grader|judge|evaluator))(?:\*\*|\]|>|\))? ?"
            r"(?:message|note|prompt|override|update|notice)? ?(?:\*\*|\]|>|\))? ?:"
            rf"|^ ?(?:#+ ?|\*\*|\[|<|\()?(?:judge|reviewer|assistant|ai|model|assessor)"
            rf"(?:\*\*|\]|>|\))? ?:[^\n]{{0,80}}?\b{VERDICT_TERM}\b"
        ),
        view="lines",
    ),
]

# Other languages: on the plain view (no look-alike folding, which would mangle them).
MULTILINGUAL: list[Rule] = [
    Rule(
        "overrides-instructions",
        "tries to override the grader's instructions (translated)",
        _rx(
            r"\bignor(?:a|ar|e|ad|iere|ieren|ate|iert|en|eer)\b[^.\n]{0,30}?\b(?:instrucciones|"
            r"anweisungen|instruktionen|istruzioni|instruções|instrucoes|regeln|reglas|regole|"
            r"instructies)\b|\bignor(?:e|ez|er)\b (?:toutes |tous )?(?:les|vos|ces) (?:\w+ )?"
            r"(?:instructions|consignes|règles)\b|"
            r"\b(?:olvida|olvide|oublie[zr]?|vergiss|vergessen sie|dimentica|esqueça|esqueca)\b"
            r"[^.\n]{0,30}?\b(?:instrucciones|instructions|consignes|anweisungen|istruzioni|"
            r"instruções)\b|"
            r"игнорир\w*[^.\n]{0,30}?(?:инструкц|указани|правил)|"
            r"забудь\w*[^.\n]{0,30}?(?:инструкц|указани|правил)|"
            r"(?:忽略|忽视|无视|無視|不要理会|忘记|忘掉)[^。\n]{0,20}?(?:指令|指示|说明|說明|提示|规则|規則|"
            r"命令)|(?:指示|命令|ルール|指令)[^。\n]{0,10}?(?:を)?(?:無視|忘れ)|"
            r"(?:이전|앞의|위의)[^.\n]{0,10}?(?:지시|명령|지침)[^.\n]{0,10}?무시"
        ),
        view="plain",
        gate=(
            "ignor",
            "olvid",
            "oubli",
            "vergiss",
            "vergessen",
            "dimentica",
            "esque",
            "игнорир",
            "забудь",
            "忽略",
            "忽视",
            "无视",
            "無視",
            "不要理会",
            "忘记",
            "忘掉",
            "忘れ",
            "무시",
        ),
    ),
    Rule(
        "addresses-grader",
        "speaks to the grader (translated)",
        _rx(
            r"\b(?:nota|aviso|mensaje|instrucci\w+) (?:para|al) (?:el |la )?(?:evaluador|"
            r"calificador|corrector|examinador)\w*|"
            r"\b(?:note|message|instructions?|remarque|consignes?|avis)s? (?:pour|à|au|aux) "
            r"(?:l'|l’|le |la |les )?(?:évaluat|correct|notat|examinat)\w*|"
            r"\b(?:hinweis|nachricht|anweisung|notiz)(?:en)? (?:für|an) (?:den |die |das )?"
            r"(?:bewerter|prüfer|korrektor|gutachter)\w*|"
            r"\b(?:nota|messaggio|istruzion[ei]) (?:per|al) (?:il |la |l'|l’)?(?:valutat|"
            r"corrett|esaminat)\w*|"
            r"\b(?:nota|mensagem|instruç\w+) (?:para|ao) (?:o |a )?(?:avaliador|corretor|"
            r"examinador)\w*|"
            r"(?:примечание|сообщение|инструкци\w*|заметка) для (?:оценщик|проверяющ|"
            r"экзаменатор)\w*|"
            r"\b(?:evaluador|calificador|évaluateur|correcteur|bewerter|prüfer|valutatore|"
            r"avaliador|оценщик|проверяющий)\w*\b[^.\n]{0,50}?(?:debe|debería|por favor|doit|"
            r"devrait|veuillez|soll|sollte|bitte|deve|dovrebbe|per favore|должен|пожалуйста)|"
            r"(?:评分员|评分者|评分人|评审员|阅卷老师|阅卷人|判分|打分者|評分者|評審員|採点者|"
            r"採点担当|評価者の方|審査員の方|채점자|평가자님|심사위원님)|"
            r"\b(?:ia|ki|ai) (?:evaluador|calificador|correct|évaluat|notat|bewert|prüf|valutat|"
            r"avaliad)\w*|\b(?:evaluador|calificador|correcteur|évaluateur|correttore|valutatore|"
            r"avaliador)\w* (?:automático|automática|automatique|automatico|ia|ai)\b|"
            r"\bà l'attention (?:du|de la|des) (?:correct|évaluat|notat|examinat)\w*|"
            r"\b(?:an|für) die (?:ki|ai)\b|\bki\b[^.\n]{0,30}?\bbewert\w*|"
            r"(?:审查|审核|评分|評分|评审|評審|评估|評估|判定|採点|審査|評価)(?:ai|ＡＩ|模型|モデル|ボット)|"
            r"(?:채점|평가|심사) ?(?:ai|모델)|"
            r"\bsi eres (?:un|una|el|la) (?:modelo|ia|evaluador|asistente|calificador)\w*|"
            r"\bsi (?:tu es|vous êtes) (?:un|une|le|la|l') ?(?:modèle|ia|correcteur|évaluateur|"
            r"assistant)\w*|\bwenn (?:du|sie) [^.\n]{0,30}?bewerte(?:st|n)\b|"
            r"(?:如果|若)你是(?:评分|评审|评估|判分)|あなたが(?:採点|評価|審査)"
        ),
        view="plain",
        gate=(
            "nota",
            "aviso",
            "mensaje",
            "instrucci",
            "évaluat",
            "correct",
            "notat",
            "examinat",
            "bewert",
            "prüf",
            "korrektor",
            "gutachter",
            "valutat",
            "corrett",
            "esaminat",
            "avaliad",
            "corretor",
            "examinador",
            "оценщик",
            "проверяющ",
            "экзаменатор",
            "evaluad",
            "calificad",
            "attention",
            "die ki",
            "die ai",
            "评分",
            "评审",
            "阅卷",
            "判分",
            "打分",
            "評分",
            "評審",
            "採点",
            "評価",
            "審査",
            "审查",
            "审核",
            "评估",
            "評估",
            "判定",
            "채점",
            "평가",
            "심사",
            "si eres",
            "si tu es",
            "si vous",
            "你是",
            "あなたが",
        ),
    ),
    Rule(
        "claims-verdict",
        "claims the rubric is satisfied (translated)",
        _rx(
            r"\b(?:cumple|satisface|cumplen|satisfacen) (?:con )?(?:todos |cada uno de )?"
            r"(?:los |el )?(?:criterios?|requisitos) (?:de (?:la )?(?:rúbrica|evaluación))?|"
            r"\b(?:tous les |les |le )?(?:critères?|exigences) (?:de (?:la )?(?:grille|rubrique|"
            r"notation|l'évaluation) )?(?:sont|est) (?:tous |toutes )?(?:remplis?|satisfaits?|"
            r"respectés?|validés?)\b|"
            r"\b(?:alle |die |das )?(?:bewertungs)?(?:kriterien|kriterium|anforderungen) (?:sind|"
            r"ist|wurden|wurde) (?:alle |vollständig )?(?:erfüllt|bestanden)\b|"
            r"\b(?:tutti i |i |il )?(?:criteri|criterio|requisiti) (?:sono|è) (?:tutti )?"
            r"(?:soddisfatti|soddisfatto|rispettati)\b|"
            r"\b(?:todos os |os |o )?(?:critérios|criterios|critério|requisitos) (?:são|foram|"
            r"é|foi) (?:todos )?(?:atendidos|cumpridos|satisfeitos|atendido)\b|"
            r"(?:все |всем )?критери\w* (?:выполнен\w*|соблюден\w*|удовлетвор\w*)|"
            r"(?:满足|符合|达到|滿足)(?:了)?(?:所有|全部|每一?[项條条])(?:的)?(?:评分)?"
            r"(?:标准|標準|要求|准则|準則)|(?:评分标准|評分標準)(?:均|都|全部)?已?(?:满足|滿足|达成)|"
            r"(?:すべての|全ての)(?:評価)?(?:基準|要件)を(?:すべて)?満たして|"
            r"(?:모든 )(?:기준|평가 기준)을? (?:모두 )?충족|"
            r"\bcritères? (?:validés?|remplis|satisfaits|respectés)\b|"
            r"\bals (?:erfüllt|bestanden|korrekt|richtig) (?:markier|bewert|wert|einstuf)\w*|"
            r"\b(?:marca|marque|marcar|márcala|califica) (?:\w+ ){0,3}como (?:cumplid|correct|"
            r"aprobad|satisfech)\w*|\bmarque[zr]? (?:\w+ ){0,3}comme (?:rempli|satisfait|correct|"
            r"validé)\w*|この回答は(?:合格|満点)|(?:本回答|此回答|这个回答)(?:合格|满分|正确)"
        ),
        unless_before=_rx(r"\b(?:si|wenn|falls|se|если)\b|如果|もし|만약"),
        view="plain",
        gate=(
            "cumpl",
            "satisf",
            "critère",
            "exigence",
            "kriteri",
            "anforderung",
            "criteri",
            "requisit",
            "critério",
            "критери",
            "满足",
            "符合",
            "达到",
            "滿足",
            "評分標準",
            "基準",
            "要件",
            "기준",
            "als ",
            "marca",
            "marque",
            "márcala",
            "califica",
            "回答",
        ),
    ),
    Rule(
        "steers-verdict",
        "asks for full marks (translated)",
        _rx(
            r"\b(?:puntuación|nota|calificación) (?:máxima|perfecta|completa)\b|"
            r"\b(?:máxima|mejor|mayor) (?:puntuación|nota|calificación)\b|"
            r"\b(?:note|score) (?:maximale|parfaite)\b|\bpleine note\b|"
            r"\b(?:volle|maximale|höchste) punkt(?:zahl|e)\b|\bbestnote\b|"
            r"\bpunteggio (?:massimo|pieno|perfetto)\b|\bnota máxima\b|\bnota maxima\b|"
            r"(?:满分|滿分|満点|만점)|(?:максимальн\w* балл|высш\w* оценк)"
        ),
        view="plain",
        gate=(
            "puntuaci",
            "nota",
            "calificaci",
            "maximale",
            "parfaite",
            "pleine",
            "punkt",
            "bestnote",
            "punteggio",
            "满分",
            "滿分",
            "満点",
            "만점",
            "балл",
            "оценк",
        ),
    ),
]

# Bare replies that carry no answer but that LLM judges have been shown to reward ("One
# Token to Fool LLM-as-a-Judge", 2025): punctuation, or a reasoning opener alone.
MASTER_KEYS = frozenset(
    [
        "thought process",
        "thought",
        "thoughts",
        "thinking",
        "let me think",
        "let's think",
        "let's think step by step",
        "let me think step by step",
        "let's solve this problem step by step",
        "let's solve this step by step",
        "let's work through this",
        "step by step",
        "solution",
        "the solution",
        "answer",
        "the answer",
        "final answer",
        "the final answer is",
        "here is the answer",
        "here's the answer",
        "here is my answer",
        "response",
        "reasoning",
        "explanation",
        "analysis",
        "sure",
        "sure here it is",
        "certainly",
        "of course",
        "met",
        "null",
        "none",
        "nil",
        "undefined",
        "n/a",
        "tbd",
        "todo",
        "解",
        "解答",
        "答案",
        "答",
        "思考过程",
        "解説",
        "かいせつ",
        "回答",
        "solución",
        "respuesta",
        "réponse",
        "lösung",
        "antwort",
    ]
)


# A run of letters or digits: a word of `_master_key`'s core (what is left between its runs of
# spaces, punctuation and underscores).
WORD_RUN = re.compile(r"[^\W_]+")


def _master_key(text: str) -> Reason | None:
    stripped = text.strip()
    if sum(1 for _ in itertools.islice(WORD_RUN.finditer(stripped), 9)) > 8:
        return None  # more than eight words is no bare opener (counted without a rewrite)
    core = re.sub(r"[\s\W_]+", " ", stripped, flags=re.UNICODE).strip()
    if not core:
        return Reason(
            "master-key",
            "no answer, only punctuation (known to fool LLM judges)",
            stripped[:40],
        )
    if len(core.split()) > 8:
        return None
    phrase = re.sub(r"[\s:.,!?*#_\-—–()\[\]{}\"'`>]+$", "", stripped)
    phrase = re.sub(r"^[\s*#_\-—–>\"'`(\[]+", "", phrase)
    phrase = re.sub(r"\s+", " ", phrase.replace("’", "'"))
    if phrase in MASTER_KEYS or core in MASTER_KEYS:
        return Reason(
            "master-key",
            "no answer, only an opener known to fool LLM judges",
            stripped[:40],
        )
    return None


BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")
# Speed only: where BASE64_RUN matches, so does this, found by RE2 in one pass (Python's engine
# tries the run at every letter of a text that has none).
BASE64_GATE = re2.compile(rb"[A-Za-z0-9+/]{24}")


def _decoded_base64(text: str) -> list[str]:
    """Readable text hidden in base64 runs (a judge model decodes it; a person does not)."""
    found: list[str] = []
    text = text[:MAX_SCAN]
    try:
        if not BASE64_GATE.search(text.encode()):
            return found
    except UnicodeEncodeError:
        pass  # lone surrogates, which RE2 cannot read: Python's engine looks
    for match in BASE64_RUN.finditer(text):
        chunk = match.group(0)
        try:
            raw = base64.b64decode(chunk + "=" * (-len(chunk) % 4), validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, ValueError):
            continue
        if decoded.isprintable() and sum(c.isalpha() for c in decoded) > len(decoded) / 2:
            found.append(decoded)
    return found


def _sentence_before(source: str, start: int) -> str:
    cut = max(source.rfind(mark, 0, start) for mark in (".", "!", "?", "\n", ";", ",", "。", "，"))
    return source[cut + 1 : start]


# --- Which rules may match: one pass of RE2 over many texts ------------------------------
#
# Python's regex engine tries each rule at every position of every text: an agent's episode
# (every assistant turn and tool output, a hundred texts) took tens of milliseconds, more CPU
# than all its judge calls. Each rule also has a prefilter: its pattern made looser (word
# boundaries and lookarounds dropped, \w, \d and \s widened to every non-ASCII character) so
# that it matches wherever the rule could, compiled with RE2, which reads text in one linear
# pass. The texts' views are joined, one per line, and each prefilter runs once over them; a
# rule is then tried, exactly as before, only on the texts a prefilter match touches. Every
# finding is the one the rule alone would give: a prefilter never misses a match, it only
# finds some that the rule then turns down.

_WIDER = {
    # Supersets, for RE2 (whose classes are ASCII), of what Python's classes take in text.
    "w": r"[0-9A-Za-z_\x{80}-\x{10FFFF}]",
    "W": r"[^0-9A-Za-z_]",
    "d": r"[0-9\x{80}-\x{10FFFF}]",
    "D": r"[^0-9]",
    "s": r"[\t-\r\x1c-\x20\x{80}-\x{10FFFF}]",
    "S": r"[^\t-\r\x1c-\x20]",
}
_KEPT_ESCAPES = set("nrtfv") | set("\\.^$|?*+()[]{}-\"'`/#&~!%,:;<=>@_ ")


def _prefilter_source(pattern: str) -> str | None:
    """`pattern` loosened so that it matches wherever it does (see above), in RE2's syntax;
    None when it uses something this does not loosen (the rule is then tried everywhere)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                return None
            nxt = pattern[i + 1]
            i += 2
            if nxt == "b" and not in_class:
                continue  # a word boundary: always taken
            if nxt in _WIDER and not in_class:
                out.append(_WIDER[nxt])
            elif nxt in _KEPT_ESCAPES:
                out.append("\\" + nxt)
            else:
                return None
            continue
        if in_class:
            if ch == "[":
                return None  # a nested set (Python warns of it): not loosened here
            in_class = ch != "]"
            out.append(ch)
            i += 1
            continue
        if ch == "[":
            in_class = True
            out.append(ch)
            if pattern.startswith("^", i + 1):
                out.append("^")
                i += 1
            if pattern.startswith("]", i + 1):  # a "]" first in a set is a member
                out.append("\\]")
                i += 1
            i += 1
            continue
        if ch == "(" and pattern.startswith("?", i + 1):
            if pattern.startswith(("(?=", "(?!", "(?<=", "(?<!"), i):
                end = _group_end(pattern, i)
                if end is None:
                    return None
                i = end  # a lookaround: always taken
                continue
            if not pattern.startswith("(?:", i):
                return None  # named groups, flags, atomic groups...
        if ch in "+*?}" and pattern.startswith("+", i + 1):
            return None  # a possessive quantifier
        out.append(ch)
        i += 1
    return "(?m)" + "".join(out)


def _group_end(pattern: str, start: int) -> int | None:
    """The index after the group opened at `start`."""
    depth, i, in_class = 0, start, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if pattern.startswith("^", i + 1):
                i += 1
            if pattern.startswith("]", i + 1):
                i += 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _prefilter(rule: Rule):
    source = _prefilter_source(rule.pattern.pattern)
    if source is None or rule.pattern.flags & ~(re.MULTILINE | re.UNICODE):
        return None
    options = re2.Options()
    options.max_mem = 64 << 20
    try:
        return re2.compile(source.encode(), options)
    except re2.error:
        return None


RULES: list[Rule] = [*ENGLISH, *MULTILINGUAL]
# Each view's rules (their index in RULES) with their prefilters (None: tried on every text).
_BY_VIEW: dict[str, list[tuple[int, object]]] = {}
for _index, _rule in enumerate(RULES):
    _BY_VIEW.setdefault(_rule.view, []).append((_index, _prefilter(_rule)))


class _AnyOf:
    """A view's prefilters as one RE2 set: which of them match somewhere in a text, in one
    pass rather than one per prefilter (a response that no rule concerns, most of them, is
    read once). Only the prefilters it names are then run to see which texts they touch.

    RE2 answers a set's match with no error when its automaton runs out of memory: an empty
    answer. The set's first pattern matches every text, so an answer without it is that
    failure, and `matching` then names every prefilter (each runs as without the set)."""

    def __init__(self, prefilters: list[tuple[int, object]]):
        options = re2.Options()
        options.max_mem = 64 << 20
        self.set = re2.Set.SearchSet(options)
        self.set.Add(b"")  # matches everywhere: its absence is RE2's failure
        self.rules: list[int] = []
        for index, prefilter in prefilters:
            if prefilter is not None:
                self.set.Add(prefilter.pattern)
                self.rules.append(index)
        self.set.Compile()

    def matching(self, joined: bytes) -> set[int] | None:
        """The RULES indices of the prefilters that match in `joined`; None: unknown (all
        may)."""
        found = self.set.Match(joined) or ()
        if 0 not in found:
            return None
        return {self.rules[i - 1] for i in found if i}


def _any_of(prefilters: list[tuple[int, object]]) -> _AnyOf | None:
    try:
        return _AnyOf(prefilters)
    except re2.error:  # too large for one set: each prefilter runs alone
        return None


_ANY_OF = {view: _any_of(rules) for view, rules in _BY_VIEW.items()}


def _sources(v: Views) -> dict[str, str]:
    """The texts the rules read, by Rule.view."""
    return {"folded": v.folded, "plain": v.plain, "lines": _fold(v.lines)}


def _candidates(sources: list[dict[str, str]]) -> list[list[Rule]]:
    """For each text (its `_sources`), the rules that may match it, in their order: those
    whose prefilter touches it, and those without one."""
    touched: list[set[int]] = [set() for _ in sources]
    for view, rules in _BY_VIEW.items():
        parts = []
        whole: set[int] = set()  # texts RE2 cannot read (lone surrogates): every rule
        for k, own in enumerate(sources):
            try:
                parts.append(own[view].encode())
            except UnicodeEncodeError:
                parts.append(b"")
                whole.add(k)
        # Where each text starts in the joined bytes (one line each: "^" and "$" hold at its
        # ends as they do in it alone).
        starts, at = [], 0
        for part in parts:
            starts.append(at)
            at += len(part) + 1
        joined = b"\n".join(parts)
        any_of = _ANY_OF[view]
        matching = any_of.matching(joined) if any_of is not None else None
        for index, prefilter in rules:
            if prefilter is None:
                for k in range(len(sources)):
                    touched[k].add(index)
                continue
            for k in whole:
                touched[k].add(index)
            if matching is not None and index not in matching:
                continue  # it matches nowhere in the texts
            for match in prefilter.finditer(joined):
                start, end = match.span()
                first = bisect.bisect_right(starts, start) - 1
                last = bisect.bisect_right(starts, max(start, end - 1)) - 1
                for k in range(first, last + 1):
                    touched[k].add(index)
    return [[RULES[i] for i in sorted(own)] for own in touched]


def _scan(
    text: str,
    note: str = "",
    v: Views | None = None,
    rules: list[Rule] | None = None,
    sources: dict[str, str] | None = None,
) -> list[Reason]:
    """The rules' findings in `text` (`rules`: those that may match it, by `_candidates`;
    default: found here)."""
    if sources is None:
        sources = _sources(v or views(text))
    if rules is None:
        rules = _candidates([sources])[0]
    reasons: list[Reason] = []
    seen: set[tuple[str, str]] = set()
    for r in rules:
        if (r.rule, r.why) in seen:
            continue
        source = sources[r.view]
        if r.gate and not any(g in source for g in r.gate):
            continue
        for match in r.pattern.finditer(source):
            if r.unless_before and r.unless_before.search(_sentence_before(source, match.start())):
                continue
            seen.add((r.rule, r.why))
            reasons.append(Reason(r.rule, r.why + note, _excerpt(source, match)))
            break
    return reasons


def detect(content) -> Finding | None:
    """The reasons this response looks aimed at the grader, or None. Deterministic.

    `content` is a text, or an episode (annotation.content.episode.Episode): then every
    assistant turn (text, reasoning, tool-call arguments) and every tool output is scanned,
    since a tool output that tells the grader what to answer reaches the judge inside the
    episode as surely as the final answer does, and each reason names the message it is in."""
    if content is not None and not isinstance(content, str):
        return _detect_episode(content)
    return _detect_text(content)


def _detect_episode(episode) -> Finding | None:
    if episode.is_text:
        return _detect_text(episode.final_text)
    scanned: list[tuple[str, str]] = []
    budget = MAX_SCAN
    for where, text in episode.scanned_texts():
        if budget <= 0:
            break
        scanned.append((where, text[:budget]))
        budget -= len(text)
    # A bare "{}" of arguments or "ok" of a tool is data, not a master-key reply: that rule
    # reads only what the agent says.
    findings = _detect_texts([text for _w, text in scanned], [", " not in w for w, _t in scanned])
    reasons: list[Reason] = []
    seen: set[tuple[str, str]] = set()
    for (where, _text), found in zip(scanned, findings, strict=True):
        for r in found.reasons if found else ():
            if (r.rule, where) in seen:
                continue
            seen.add((r.rule, where))
            reasons.append(Reason(r.rule, f"{r.why} (in {where})", r.excerpt))
    return Finding(tuple(reasons)) if reasons else None


def _detect_text(text: str | None, master_key: bool = True) -> Finding | None:
    return _detect_texts([text], [master_key])[0]


def _detect_texts(texts: list[str | None], master_keys: list[bool]) -> list[Finding | None]:
    """`_detect_text` of each of `texts`, the rules' prefilters run over all of them at once."""
    live = [k for k, text in enumerate(texts) if not is_empty(text)]
    seen = {k: views(texts[k]) for k in live}  # type: ignore[arg-type]
    sources = {k: _sources(v) for k, v in seen.items()}
    rules = dict(zip(live, _candidates([sources[k] for k in live]), strict=True))
    out: list[Finding | None] = [None] * len(texts)
    for k in live:
        text = texts[k]
        assert text is not None
        v = seen[k]
        reasons = _scan(text, v=v, rules=rules[k], sources=sources[k])
        key = _master_key(v.plain) if master_keys[k] else None
        if key:
            reasons.append(key)
        hidden = [] if text.isascii() else HIDDEN.findall(text[:MAX_SCAN])
        # A leading byte-order mark is an encoding artefact, not hiding.
        if hidden and not (len(hidden) == 1 and text.startswith("\ufeff")):
            names = sorted({unicodedata.name(ch, f"U+{ord(ch):04X}") for ch in hidden})[:3]
            smuggled = v.hidden
            reasons.append(
                Reason(
                    "hidden-text",
                    f"contains {len(hidden)} invisible character{'s' if len(hidden) != 1 else ''}"
                    f" ({', '.join(n.lower() for n in names)})",
                    smuggled[:60] if smuggled else "",
                )
            )
            if smuggled:
                reasons.extend(_scan(smuggled, " (spelled in invisible tag characters)"))
        for decoded in _decoded_base64(text):
            inner = _scan(decoded, " (hidden in base64)")
            if inner:
                reasons.extend(inner)
        out[k] = Finding(tuple(reasons)) if reasons else None
    return out


# --- The adversarial corpus ---------------------------------------------------------------

CORPUS = Path(__file__).resolve().parent / "injection_corpus.jsonl"
CORPUS_FIELDS = {
    "id": "a unique name",
    "category": "what kind of attack (or 'benign')",
    "attack": "true for an adversarial response, false for an honest one",
    "text": "the response (null for a JSON null)",
    "handled_by": "optional: 'empty-rule' for replies the engine's empty rule handles",
    "batch": "optional: which batch of writing it came from",
    "note": "optional: a remark",
}


class CorpusError(ValueError):
    pass


@dataclass(frozen=True)
class Sample:
    id: str
    category: str
    attack: bool
    text: str | None
    handled_by: str = ""
    batch: str = ""
    note: str = ""


def load_corpus(path: Path = CORPUS) -> list[Sample]:
    """The labelled corpus, one JSON object per line; a bad line is refused with its number
    and field."""
    samples: list[Sample] = []
    seen: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}, line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}: not JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise CorpusError(f"{where}: expected a JSON object")
        unknown = sorted(set(row) - set(CORPUS_FIELDS))
        if unknown:
            raise CorpusError(f"{where}, field '{unknown[0]}': unknown field")
        for name in ("id", "category"):
            if not isinstance(row.get(name), str) or not row[name].strip():
                raise CorpusError(f"{where}, field '{name}': required, {CORPUS_FIELDS[name]}")
        if not isinstance(row.get("attack"), bool):
            raise CorpusError(f"{where}, field 'attack': {CORPUS_FIELDS['attack']}")
        if "text" not in row or not (row["text"] is None or isinstance(row["text"], str)):
            raise CorpusError(f"{where}, field 'text': required, {CORPUS_FIELDS['text']}")
        handled_by = row.get("handled_by", "")
        if handled_by not in ("", "empty-rule"):
            raise CorpusError(f"{where}, field 'handled_by': {CORPUS_FIELDS['handled_by']}")
        if handled_by and not is_empty(row["text"]):
            raise CorpusError(f"{where}, field 'text': the empty rule handles only empty text")
        if row["id"] in seen:
            raise CorpusError(f"{where}, field 'id': '{row['id']}' is used twice")
        seen.add(row["id"])
        samples.append(
            Sample(
                id=row["id"],
                category=row["category"],
                attack=row["attack"],
                text=row["text"],
                handled_by=handled_by,
                batch=row.get("batch", ""),
                note=row.get("note", ""),
            )
        )
    return samples
