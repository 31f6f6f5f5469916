"""The attack simulator: attacks on disclosure control across questions, run by an approved
applicant through the public GraphQL endpoint against a real federation on loopback.

    python -m bench.attacks            # 4 DuckDB nodes of 100,000 persons (make attacks)
    python -m bench.attacks --postgres # the same with every node's CDM in PostgreSQL
    python -m bench.attacks --quick    # 3 nodes of 20,000 persons (the test in make test)
    python -m bench.attacks.pair_noise # the noise behind classes 13, 14 and 17, measured
    python -m bench.attacks.survival_noise # the noise behind class 20, measured

The simulator starts its own federation (`federation`), reads every node's truth straight from
its database (`truth`), and runs twenty-one classes of attack, each a module that picks its
targets from the truth, asks its questions as an applicant of its own (`client`), estimates
from what was released only (`estimate`, `solve`) and returns a typed result (`verdict`):

1. `trackers`: three-question trackers from unions, ranges and complements
2. `cells`: a breakdown cell against a total, or a cell of another question
3. `margins`: a table and its margins in separate questions, by integer programming
4. `zeros`: zero versus small, from which cells are listed, withheld or released
5. `averaging`: many decompositions of one small set, rewordings, repeats
6. `approvals`: several approvals of one applicant
7. `refresh`: an opt-out register update and a CDM rebuild between questions
8. `equality`: "P" against "P and not born in the target's year"
9. `isolation`: one person singled out by known attributes, then a sensitive diagnosis
10. `pooled_others`: a count pooled securely minus the other countries' released counts
11. `node_sets`: one question pooled over two sets of countries, with and without one
12. `dropouts`: a node dropping out of a pooled round, the question asked again
13. `complements`: "A" against "A without X" (`exclude`), in several wordings
14. `ladders`: "at least N records of C" against "at least N+1" (`atLeast`)
15. `deaths`: a known decedent's diagnosis, from a one-month death window
16. `means`: a known person's value from two means, a cohort with them and without them
17. `windows`: "X within d days of the index" against "within d − 1" (relative windows)
18. `regressions`: a regression built to single out a person (a one-hot, a cohort of one)
19. `rates`: a known person's days at risk from two incidence rates' person-time, with and
    without them
20. `survival`: a known decedent's death as the only difference of two survival curves
21. `pooled_survival`: a survival curve pooled securely minus the other countries' own
    curves

Each class prints its targets, questions spent, the attacker's estimates against the truth
with standard errors, and the verdict (the rule is in `verdict`). The command exits 1 when any
class pinned something.
"""
