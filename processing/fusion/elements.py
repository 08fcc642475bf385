"""Atomic numbers by element name: the Z weights of the HAADF model (HAADF ~ sum_i w_i x_i**gamma, w_i ~ Z_i).

Names are element symbols ("Sc", "dy", "O"; case-insensitive) or English names ("Scandium"). An element map
named after an edge or line ("Sc_L", "Dy M5", "O-K", "Sc_Ka") is looked up by its leading symbol.
"""
from __future__ import annotations

import re
import typing

from processing.base import ParameterError

__all__ = ["SYMBOLS", "atomic_number", "element_symbol", "parse_elements"]

#: element symbols in order of Z (index + 1 = Z), H .. Og
SYMBOLS: tuple[str, ...] = tuple(
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr Rb Sr Y Zr "
    "Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt "
    "Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc "
    "Lv Ts Og".split())

_NAMES: tuple[str, ...] = tuple(
    "hydrogen helium lithium beryllium boron carbon nitrogen oxygen fluorine neon sodium magnesium aluminium silicon "
    "phosphorus sulfur chlorine argon potassium calcium scandium titanium vanadium chromium manganese iron cobalt "
    "nickel copper zinc gallium germanium arsenic selenium bromine krypton rubidium strontium yttrium zirconium "
    "niobium molybdenum technetium ruthenium rhodium palladium silver cadmium indium tin antimony tellurium iodine "
    "xenon caesium barium lanthanum cerium praseodymium neodymium promethium samarium europium gadolinium terbium "
    "dysprosium holmium erbium thulium ytterbium lutetium hafnium tantalum tungsten rhenium osmium iridium platinum "
    "gold mercury thallium lead bismuth polonium astatine radon francium radium actinium thorium protactinium "
    "uranium neptunium plutonium americium curium berkelium californium einsteinium fermium mendelevium nobelium "
    "lawrencium rutherfordium dubnium seaborgium bohrium hassium meitnerium darmstadtium roentgenium copernicium "
    "nihonium flerovium moscovium livermorium tennessine oganesson".split())

_BY_KEY: dict[str, int] = {s.lower(): z for z, s in enumerate(SYMBOLS, 1)}
_BY_KEY.update({n: z for z, n in enumerate(_NAMES, 1)})
_BY_KEY.update({"aluminum": 13, "cesium": 55, "sulphur": 16})


def atomic_number(name: str) -> int:
    """Z of the element ``name`` (symbol or English name, case-insensitive; an edge suffix is ignored).

    >>> atomic_number("Sc"), atomic_number("dysprosium"), atomic_number("O_K"), atomic_number("Dy M5")
    (21, 66, 8, 66)
    """
    if not isinstance(name, str) or not name.strip():
        raise ParameterError(f"an element name must be a non-empty string; got {name!r}. Use a symbol such as "
                             f"'Sc' or 'Dy'.")
    key = name.strip().lower()
    if key in _BY_KEY:
        return _BY_KEY[key]
    head = re.split(r"[\s_\-.:]+", key, maxsplit=1)[0]
    if head in _BY_KEY:
        return _BY_KEY[head]
    close = [s for s in SYMBOLS if s.lower().startswith(key[:1])][:8]
    raise ParameterError(f"unknown element name {name!r}; use an element symbol (e.g. {', '.join(close) or 'Sc'}) "
                         f"or an English name, optionally followed by an edge or line ('Sc_L', 'O K').")


def element_symbol(name: str) -> str:
    """The symbol of ``name`` ("dysprosium" -> "Dy", "sc_L" -> "Sc")."""
    return SYMBOLS[atomic_number(name) - 1]


def parse_elements(text: str | typing.Sequence[str]) -> tuple[str, ...]:
    """"Sc, Dy,O" -> ("Sc", "Dy", "O") (at least two; symbols checked; raises ParameterError)."""
    items = [t.strip() for t in (text.replace(";", ",").split(",") if isinstance(text, str) else text)]
    items = [t for t in items if t]
    if len(items) < 2:
        raise ParameterError(f"fusion needs at least two elements; got {text!r}. Give e.g. 'Sc,Dy,O'.")
    return tuple(element_symbol(t) for t in items)
