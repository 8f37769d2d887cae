"""The outcome labels vipflow understands: NACHA's ACH return reason codes, chargebacks, confirmed fraud
and confirmed good. Data, in one place: the CSV import, the API, the report and the simulator read it here.

The return codes and their names are those of the Nacha Operating Rules, Appendix Four (Return Entries),
as amended in 2021 (R10/R11 reworded, R17 extended). ``window`` is the return time frame the Rules give
the receiving bank: ``2bd`` two banking days after settlement, ``60d`` sixty calendar days (the
unauthorized-entry returns, which look like fraud), ``other`` for the dishonored and contested returns
and the enrollment and IAT codes, which follow their own timetables. ``group`` sorts them for people:
``funds``, ``account``, ``unauthorized``, ``stopped``, ``administrative``, ``dishonored``.

Every label is *bad* (the decision should not have let the money move: a return, a chargeback, fraud)
or *good* (``confirmed_good``): :func:`verdict`. The rules report's precision and recall count on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["ach_return", "chargeback", "fraud", "good"]
Verdict = Literal["bad", "good"]


@dataclass(frozen=True)
class ReturnCode:
    """One NACHA return reason code: ``R01`` ..., its name, group and return window."""

    code: str
    name: str
    group: str
    window: str  # 2bd | 60d | other


def _codes(group: str, window: str, *pairs: tuple[str, str]) -> list[ReturnCode]:
    return [ReturnCode(code, name, group, window) for code, name in pairs]


RETURN_CODES: dict[str, ReturnCode] = {rc.code: rc for rc in sorted([
    *_codes("funds", "2bd", ("R01", "Insufficient Funds"), ("R09", "Uncollected Funds")),
    *_codes("account", "2bd",
            ("R02", "Account Closed"), ("R03", "No Account/Unable to Locate Account"),
            ("R04", "Invalid Account Number Structure"), ("R12", "Account Sold to Another DFI"),
            ("R13", "Invalid ACH Routing Number"),
            ("R14", "Representative Payee Deceased or Unable to Continue in That Capacity"),
            ("R15", "Beneficiary or Account Holder (Other Than a Representative Payee) Deceased"),
            ("R16", "Account Frozen/Entry Returned per OFAC Instruction"),
            ("R20", "Non-Transaction Account"), ("R23", "Credit Entry Refused by Receiver")),
    *_codes("unauthorized", "60d",
            ("R05", "Unauthorized Debit to Consumer Account Using Corporate SEC Code"),
            ("R07", "Authorization Revoked by Customer"),
            ("R10", "Customer Advises Originator is Not Known to Receiver and/or Originator is Not "
                    "Authorized by Receiver to Debit Receiver's Account"),
            ("R11", "Customer Advises Entry Not in Accordance with the Terms of the Authorization"),
            ("R51", "Item Related to RCK Entry is Ineligible or RCK Entry is Improper")),
    *_codes("unauthorized", "2bd", ("R29", "Corporate Customer Advises Not Authorized")),
    *_codes("stopped", "2bd", ("R08", "Payment Stopped"), ("R38", "Stop Payment on Source Document"),
            ("R52", "Stop Payment on Item Related to RCK Entry")),
    *_codes("administrative", "60d", ("R06", "Returned per ODFI's Request"),
            ("R37", "Source Document Presented for Payment"),
            ("R39", "Improper Source Document/Source Document Presented for Payment"),
            ("R53", "Item and RCK Entry Presented for Payment")),
    *_codes("administrative", "2bd",
            ("R17", "File Record Edit Criteria/Entry with Invalid Account Number Initiated Under Questionable "
                    "Circumstances"),
            ("R18", "Improper Effective Entry Date"), ("R19", "Amount Field Error"),
            ("R21", "Invalid Company Identification"), ("R22", "Invalid Individual ID Number"),
            ("R24", "Duplicate Entry"), ("R25", "Addenda Error"), ("R26", "Mandatory Field Error"),
            ("R27", "Trace Number Error"), ("R28", "Routing Number Check Digit Error"),
            ("R30", "RDFI Not Participant in Check Truncation Program"),
            ("R31", "Permissible Return Entry (CCD and CTX only)"), ("R32", "RDFI Non-Settlement"),
            ("R33", "Return of XCK Entry"), ("R34", "Limited Participation DFI"),
            ("R35", "Return of Improper Debit Entry"), ("R36", "Return of Improper Credit Entry"),
            ("R50", "State Law Affecting RCK Acceptance")),
    *_codes("administrative", "other",
            ("R40", "Return of ENR Entry by Federal Government Agency (ENR only)"),
            ("R41", "Invalid Transaction Code (ENR only)"), ("R42", "Routing Number/Check Digit Error (ENR only)"),
            ("R43", "Invalid DFI Account Number (ENR only)"),
            ("R44", "Invalid Individual ID Number/Identification Number (ENR only)"),
            ("R45", "Invalid Individual Name/Company Name (ENR only)"),
            ("R46", "Invalid Representative Payee Indicator (ENR only)"), ("R47", "Duplicate Enrollment (ENR only)"),
            ("R80", "IAT Entry Coding Error"), ("R81", "Non-Participant in IAT Program"),
            ("R82", "Invalid Foreign Receiving DFI Identification"), ("R83", "Foreign Receiving DFI Unable to Settle"),
            ("R84", "Entry Not Processed by Gateway"), ("R85", "Incorrectly Coded Outbound International Payment")),
    *_codes("dishonored", "other",
            ("R61", "Misrouted Return"), ("R62", "Return of Erroneous or Reversing Debit"),
            ("R67", "Duplicate Return"), ("R68", "Untimely Return"), ("R69", "Field Error(s)"),
            ("R70", "Permissible Return Entry Not Accepted/Return Not Requested by ODFI"),
            ("R71", "Misrouted Dishonored Return"), ("R72", "Untimely Dishonored Return"),
            ("R73", "Timely Original Return"), ("R74", "Corrected Return"), ("R75", "Return Not a Duplicate"),
            ("R76", "No Errors Found"), ("R77", "Non-Acceptance of R62 Dishonored Return")),
], key=lambda rc: rc.code)}

CHARGEBACK = "chargeback"
CONFIRMED_FRAUD = "confirmed_fraud"
CONFIRMED_GOOD = "confirmed_good"
OTHER_LABELS: dict[str, tuple[Kind, str]] = {
    CHARGEBACK: ("chargeback", "the patron's bank or card issuer reversed the payment (a dispute)"),
    CONFIRMED_FRAUD: ("fraud", "the operator's investigation found it fraudulent"),
    CONFIRMED_GOOD: ("good", "the operator confirmed it legitimate (settled, no return, no dispute)"),
}
# Spellings accepted on input, folded to the canonical label (case is ignored too).
ALIASES = {"fraud": CONFIRMED_FRAUD, "good": CONFIRMED_GOOD, "confirmed-fraud": CONFIRMED_FRAUD,
           "confirmed-good": CONFIRMED_GOOD, "charge-back": CHARGEBACK}
_R_CODE = re.compile(r"[Rr]\d\d")


class UnknownLabel(ValueError):
    """A label that is none of the return codes, chargeback, confirmed_fraud, confirmed_good."""


def canonical(text: str) -> str:
    """The canonical label for ``text`` (``r01`` -> ``R01``, ``Fraud`` -> ``confirmed_fraud``);
    UnknownLabel saying what is accepted."""
    word = text.strip()
    if _R_CODE.fullmatch(word):
        code = word.upper()
        if code in RETURN_CODES:
            return code
        raise UnknownLabel(f"{word!r} is not a NACHA return reason code (R01 to R85, see `vipflow labels codes`)")
    folded = word.lower().replace(" ", "_")
    folded = ALIASES.get(folded, folded)
    if folded in OTHER_LABELS:
        return folded
    shown = repr(word) if len(word) <= 40 else repr(word[:40] + "...")
    raise UnknownLabel(f"{shown} is not a label; use a NACHA return code (R01 ... R85), chargeback, "
                       "confirmed_fraud or confirmed_good")


def kind_of(label: str) -> Kind:
    """The kind of a canonical label: ``ach_return``, ``chargeback``, ``fraud`` or ``good``."""
    if label in RETURN_CODES:
        return "ach_return"
    return OTHER_LABELS[label][0]


def verdict(label: str) -> Verdict:
    """``good`` for confirmed_good, ``bad`` for every other label (a return, a chargeback, fraud)."""
    return "good" if kind_of(label) == "good" else "bad"


def describe(label: str) -> str:
    """A label's name for people: ``R01 Insufficient Funds``, ``chargeback``."""
    rc = RETURN_CODES.get(label)
    return f"{rc.code} {rc.name}" if rc is not None else label
