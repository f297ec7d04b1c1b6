"""Regenerate the demo knowledge graph, corpus and rule file (all invented by us).

    python -m rulerag.demo.make_demo

The world is fictional: people, cities, countries, companies and languages with made-up names.
Facts are drawn with a fixed seed. One fact is held out on purpose: *Alice Marlow citizen_of
Norland* is not in the KG (nor is her birthplace). The demo question "Which country is Alice Marlow
a citizen of?" is answerable through the rule ``[Entity1, serves_in_army_of, Entity2] leads to
[Entity1, citizen_of, Entity2]`` and the document "Alice Marlow serves in army of Norland.", which
the question alone ranks low: a near-namesake, Alicia Marlow, is a citizen of Karsland, and Alice
has many facts that sound like citizenship without being evidence of it (honorary citizen of a
city, a visa, a former residence, an application for citizenship, taxes, property).
Rule confidences and supports are counted on the generated KG, not invented.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from rulerag.corpus import Document, linearise_fact, write_corpus
from rulerag.demo import DEMO_CORPUS, DEMO_RULES
from rulerag.io import atomic_file

HERE = Path(__file__).resolve().parent
SEED = 7

COUNTRIES = {  # country -> (language, cities)
    "Norland": ("Norric", ["Tarvik", "Holmsby", "Vessa"]),
    "Karsland": ("Karsic", ["Dravport", "Ulmen", "Brisa"]),
    "Estova": ("Estovan", ["Lindmark", "Pella", "Oskar Bay"]),
    "Ostria": ("Ostrian", ["Veldt", "Marrow Falls", "Quill"]),
    "Sundara": ("Sundari", ["Amrit", "Kolo", "Teshwa"]),
    "Valdoria": ("Valdorian", ["Castel Rho", "Min", "Aubrec"]),
}
COMPANIES = ["Karsland Rail", "Northwind Optics", "Pella Mills", "Quill Analytics", "Sundara Shipping",
             "Valdor Bank", "Tarvik Foods", "Brisa Energy", "Ulmen Motors", "Amrit Textiles"]
FIRST = ["Bram", "Cora", "Dmitri", "Elsa", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kaia", "Lev", "Mira",
         "Nils", "Odile", "Pavel", "Rosa", "Sami", "Tove", "Umar", "Vera", "Wim", "Xenia", "Yusuf", "Zora",
         "Anton", "Beata", "Cyril", "Dana", "Emil", "Freya", "Gustav", "Hana", "Ivo", "Jana"]
LAST = ["Teller", "Okafor", "Lindqvist", "Moreau", "Haddad", "Novak", "Sato", "Ferreira", "Kowal", "Brandt",
        "Aalto", "Ruiz", "Petrov", "Nakamura", "Osei", "Varga", "Quist", "Duarte"]


def build() -> list[tuple[str, str, str]]:
    rng = random.Random(SEED)
    facts: list[tuple[str, str, str]] = []
    city_country = {}
    for country, (lang, cities) in COUNTRIES.items():
        facts.append((country, "official_language", lang))
        for city in cities:
            facts.append((city, "located_in", country))
            city_country[city] = country
    cities = sorted(city_country)
    company_city = {}
    for company in COMPANIES:
        company_city[company] = rng.choice(cities)
        facts.append((company, "headquartered_in", company_city[company]))

    people = sorted({f"{first} {last}" for first, last in zip(rng.sample(FIRST, len(FIRST)), rng.choices(LAST, k=len(FIRST)))})
    countries = sorted(COUNTRIES)
    for person in people:
        born = rng.choice(countries)
        facts.append((person, "born_in", born))
        # most people hold the citizenship of their birth country; some were naturalised elsewhere
        citizen = born if rng.random() < 0.8 else rng.choice(countries)
        facts.append((person, "citizen_of", citizen))
        home = rng.choice(COUNTRIES[citizen][1] if rng.random() < 0.5 else cities)
        facts.append((person, "lives_in", home))
        job = rng.choice(COMPANIES)
        facts.append((person, "works_for", job))
        if rng.random() < 0.6:
            facts.append((person, "works_in", company_city[job]))
        facts.append((person, "speaks", COUNTRIES[citizen][0]))
        if rng.random() < 0.35:  # armies recruit citizens, with the odd foreign volunteer
            facts.append((person, "serves_in_army_of", citizen if rng.random() < 0.9 else rng.choice(countries)))
        for city in rng.sample(cities, rng.randint(0, 2)):
            facts.append((person, "visited", city))
        # facts that sound like citizenship but are not evidence of it
        if rng.random() < 0.2:
            facts.append((person, "honorary_citizen_of", rng.choice(cities)))
        if rng.random() < 0.3:
            facts.append((person, "holds_visa_for", rng.choice(countries)))
        if rng.random() < 0.3:
            facts.append((person, "previously_lived_in", rng.choice(countries)))
        if rng.random() < 0.15:
            facts.append((person, "applied_for_citizenship_of", rng.choice(countries)))
        if rng.random() < 0.25:
            facts.append((person, "pays_taxes_in", rng.choice(countries)))
        if rng.random() < 0.25:
            facts.append((person, "owns_property_in", rng.choice(countries)))

    # The demo's protagonists. Alice's citizenship is deliberately missing.
    facts += [
        ("Alice Marlow", "honorary_citizen_of", "Dravport"),
        ("Alice Marlow", "holds_visa_for", "Karsland"),
        ("Alice Marlow", "applied_for_citizenship_of", "Valdoria"),
        ("Alice Marlow", "pays_taxes_in", "Estova"),
        ("Alice Marlow", "owns_property_in", "Sundara"),
        ("Alice Marlow", "previously_lived_in", "Estova"),
        ("Alice Marlow", "lives_in", "Tarvik"),
        ("Alice Marlow", "works_for", "Karsland Rail"),
        ("Alice Marlow", "works_in", company_city["Karsland Rail"]),
        ("Alice Marlow", "visited", "Dravport"),
        ("Alice Marlow", "visited", "Veldt"),
        ("Alice Marlow", "visited", "Amrit"),
        ("Alice Marlow", "studied_at", "Pella University"),
        ("Alice Marlow", "married_to", "Jonas Brandt"),
        ("Alice Marlow", "serves_in_army_of", "Norland"),
        ("Jonas Brandt", "married_to", "Alice Marlow"),
        ("Alicia Marlow", "born_in", "Karsland"),
        ("Alicia Marlow", "citizen_of", "Karsland"),
        ("Alicia Marlow", "lives_in", "Dravport"),
        ("Alicia Marlow", "speaks", "Karsic"),
        ("Pella University", "located_in", "Estova"),
    ]
    seen: set[tuple[str, str, str]] = set()
    unique = []
    for fact in facts:
        if fact not in seen:
            seen.add(fact)
            unique.append(fact)
    return unique


RULES = [  # (head, body) in datalog form; confidence and support are counted below
    ("citizen_of", [("serves_in_army_of", "X", "Y")]),
    ("citizen_of", [("born_in", "X", "Y")]),
    ("citizen_of", [("lives_in", "X", "Z"), ("located_in", "Z", "Y")]),
    ("speaks", [("citizen_of", "X", "Z"), ("official_language", "Z", "Y")]),
    ("speaks", [("born_in", "X", "Z"), ("official_language", "Z", "Y")]),
    ("works_in", [("works_for", "X", "Z"), ("headquartered_in", "Z", "Y")]),
    ("married_to", [("married_to", "Y", "X")]),
]


def count_rule(facts, head: str, body) -> tuple[int, float]:
    """Support (body groundings whose head holds) and standard confidence of a rule on ``facts``."""
    by_rel = defaultdict(set)
    for s, r, o in facts:
        by_rel[r].add((s, o))
    groundings: set[tuple[str, str]] = set()
    if len(body) == 1:
        r, a, _ = body[0]
        for s, o in by_rel[r]:
            groundings.add((s, o) if a == "X" else (o, s))
    else:
        (r1, _, _), (r2, _, _) = body
        second = defaultdict(set)
        for s, o in by_rel[r2]:
            second[s].add(o)
        for x, z in by_rel[r1]:
            for y in second[z]:
                groundings.add((x, y))
    support = sum(1 for g in groundings if g in by_rel[head])
    return support, round(support / len(groundings), 3) if groundings else 0.0


def main() -> None:
    import orjson

    facts = build()
    with atomic_file(HERE / "kg.tsv") as fh:
        fh.write("# subject\trelation\tobject (demo KG, invented; see make_demo.py)\n")
        for s, r, o in facts:
            fh.write(f"{s}\t{r}\t{o}\n")
    docs = [Document(f"demo-{i:04d}", linearise_fact(s, r, o), {"subject": s, "relation": r, "object": o}) for i, (s, r, o) in enumerate(facts)]
    write_corpus(docs, DEMO_CORPUS)
    with atomic_file(DEMO_RULES, "wb") as fh:
        for head, body in RULES:
            support, conf = count_rule(facts, head, body)
            datalog = f"{head}(X,Y) <- " + ", ".join(f"{r}({a},{b})" for r, a, b in body)
            fh.write(orjson.dumps({"rule": datalog, "confidence": conf, "support": support}) + b"\n")
    print(f"{len(facts)} facts, {len(docs)} documents, {len(RULES)} rules")


if __name__ == "__main__":
    main()
