"""Write data/train.jsonl, data/eval.jsonl and shop.sql for the terse SQL assistant. Deterministic: same files
every run.

Each row is an OpenAI-style chat: a system prompt with the schema and the rule "answer with one SQL query,
nothing else", a user question, and the assistant's answer, which is only the SQL. shop.sql creates and fills
the tables the schema names (a few hundred rows); metric.py runs both the answer and the reference on it and
scores 1 when their results agree (execution accuracy).

    python examples/sql_assistant/make_data.py          # rewrites data/*.jsonl and shop.sql
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 7
N_TRAIN = 240
N_EVAL = 30

SCHEMA = ("employees(id, name, department_id, salary, hired_on); departments(id, name, budget); "
          "customers(id, name, city); orders(id, customer_id, total, placed_on)")
SYSTEM = f"You are a SQL assistant. Answer with one SQL query, nothing else. Schema: {SCHEMA}"

DEPARTMENTS = ["Sales", "Engineering", "Marketing", "Finance", "Support", "Legal", "Research", "Operations"]
CITIES = ["Paris", "Berlin", "Madrid", "Lisbon", "Rome", "Vienna", "Dublin", "Oslo", "Prague", "Warsaw"]
CUSTOMERS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Wonka", "Tyrell", "Cyberdyne"]
YEARS = [2019, 2020, 2021, 2022, 2023, 2024]
AMOUNTS = [1000, 2500, 5000, 10000, 40000, 50000, 60000, 75000, 90000, 120000]

# (question phrasings, SQL). Placeholders: {dept} {city} {customer} {year} {next_year} {n} {k} {date}
TEMPLATES: list[tuple[list[str], str]] = [
    (["How many employees work in {dept}?", "Count the employees in the {dept} department.",
      "Number of people in {dept}?"],
     "SELECT COUNT(*) FROM employees e JOIN departments d ON e.department_id = d.id WHERE d.name = '{dept}';"),
    (["List the names of employees earning more than {n}.", "Which employees have a salary above {n}?",
      "Who earns over {n}?"],
     "SELECT name FROM employees WHERE salary > {n};"),
    (["What is the average salary in {dept}?", "Average pay in the {dept} department?",
      "Mean salary of {dept} staff?"],
     "SELECT AVG(e.salary) FROM employees e JOIN departments d ON e.department_id = d.id WHERE d.name = '{dept}';"),
    (["Which customers are in {city}?", "List customers located in {city}.", "Customers from {city}?"],
     "SELECT name FROM customers WHERE city = '{city}';"),
    (["What is the total of all orders by {customer}?", "How much has {customer} spent in total?",
      "Sum of order totals for {customer}?"],
     "SELECT SUM(o.total) FROM orders o JOIN customers c ON o.customer_id = c.id WHERE c.name = '{customer}';"),
    (["Show the {k} largest orders.", "Top {k} orders by total?", "List the {k} biggest orders."],
     "SELECT id, total FROM orders ORDER BY total DESC LIMIT {k};"),
    (["How many orders were placed in {year}?", "Count the orders from {year}.", "Number of orders in {year}?"],
     "SELECT COUNT(*) FROM orders WHERE placed_on >= '{year}-01-01' AND placed_on < '{next_year}-01-01';"),
    (["Who was hired after {date}?", "List employees hired after {date}.", "Employees who joined after {date}?"],
     "SELECT name FROM employees WHERE hired_on > '{date}';"),
    (["How many customers are there in each city?", "Count customers per city.", "Customers by city, counted?"],
     "SELECT city, COUNT(*) FROM customers GROUP BY city;"),
    (["Which customers have never placed an order?", "List customers with no orders.",
      "Customers without any order?"],
     "SELECT c.name FROM customers c LEFT JOIN orders o ON o.customer_id = c.id WHERE o.id IS NULL;"),
    (["Which departments have a budget over {n}?", "List departments with a budget above {n}.",
      "Departments whose budget exceeds {n}?"],
     "SELECT name FROM departments WHERE budget > {n};"),
    (["What is the highest salary in {dept}?", "Top salary in the {dept} department?",
      "Maximum pay in {dept}?"],
     "SELECT MAX(e.salary) FROM employees e JOIN departments d ON e.department_id = d.id WHERE d.name = '{dept}';"),
    (["How many orders did customers in {city} place?", "Count orders from customers in {city}.",
      "Number of orders placed from {city}?"],
     "SELECT COUNT(*) FROM orders o JOIN customers c ON o.customer_id = c.id WHERE c.city = '{city}';"),
    (["List orders over {n}.", "Which orders have a total above {n}?", "Orders bigger than {n}?"],
     "SELECT id, total FROM orders WHERE total > {n};"),
    (["What is the total salary cost per department?", "Sum of salaries by department?",
      "Payroll per department?"],
     "SELECT d.name, SUM(e.salary) FROM employees e JOIN departments d ON e.department_id = d.id GROUP BY d.name;"),
    (["What is the average order total in {year}?", "Mean order value for {year}?",
      "Average size of orders placed in {year}?"],
     "SELECT AVG(total) FROM orders WHERE placed_on >= '{year}-01-01' AND placed_on < '{next_year}-01-01';"),
]


def _values(rng: random.Random) -> dict[str, object]:
    year = rng.choice(YEARS)
    return {
        "dept": rng.choice(DEPARTMENTS), "city": rng.choice(CITIES), "customer": rng.choice(CUSTOMERS),
        "year": year, "next_year": year + 1, "n": rng.choice(AMOUNTS), "k": rng.choice([3, 5, 10, 20]),
        "date": f"{rng.choice(YEARS)}-{rng.randint(1, 12):02d}-01",
    }


def qa_pairs(count: int, seed: int = SEED) -> list[tuple[str, str]]:
    """`count` distinct (question, sql) pairs, cycling through the templates so each is well represented."""
    rng = random.Random(seed)
    seen: set[str] = set()
    pairs: list[tuple[str, str]] = []
    attempts = 0
    while len(pairs) < count and attempts < count * 50:
        phrasings, sql = TEMPLATES[attempts % len(TEMPLATES)]
        attempts += 1
        values = _values(rng)
        question = rng.choice(phrasings).format(**values)
        if question in seen:
            continue
        seen.add(question)
        pairs.append((question, sql.format(**values)))
    return pairs


def chat_row(question: str, sql: str) -> dict:
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question},
                         {"role": "assistant", "content": sql}]}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


TABLES = """CREATE TABLE departments (id INTEGER PRIMARY KEY, name TEXT NOT NULL, budget INTEGER NOT NULL);
CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT NOT NULL, department_id INTEGER REFERENCES departments(id),
                        salary INTEGER NOT NULL, hired_on TEXT NOT NULL);
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), total INTEGER NOT NULL,
                     placed_on TEXT NOT NULL);
"""
FIRST_NAMES = ["Ada", "Ben", "Chloe", "Dev", "Eva", "Femi", "Gus", "Hana", "Ivan", "Jun", "Kai", "Lea", "Milo",
               "Nora", "Omar", "Pia", "Quin", "Rosa", "Sami", "Tove", "Uma", "Vik", "Wren", "Yara"]
MORE_CUSTOMERS = ["Soylent", "Vandelay", "Gringotts", "Oscorp", "Duff", "Monarch", "Nakatomi", "Massive"]


def database_script(seed: int = SEED) -> str:
    """shop.sql: the schema's four tables with data the questions discriminate on (every department and
    city has rows, salaries and order totals are distinct, some customers never ordered)."""
    rng = random.Random(seed + 2)
    lines = ["-- Written by make_data.py (deterministic). metric.py loads it into an in-memory SQLite database.",
             TABLES.strip()]
    for i, name in enumerate(DEPARTMENTS, start=1):
        lines.append(f"INSERT INTO departments VALUES ({i}, '{name}', {rng.randrange(30_000, 150_000, 500)});")
    salaries = rng.sample(range(32_000, 131_000, 250), 6 * len(DEPARTMENTS))
    for i, salary in enumerate(salaries, start=1):
        name = f"{FIRST_NAMES[(i - 1) % len(FIRST_NAMES)]} {chr(65 + (i - 1) // len(FIRST_NAMES))}."
        hired = f"{rng.choice(range(2017, 2025))}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        lines.append(f"INSERT INTO employees VALUES ({i}, '{name}', {(i - 1) % len(DEPARTMENTS) + 1}, {salary}, "
                     f"'{hired}');")
    customers = CUSTOMERS + MORE_CUSTOMERS
    for i, name in enumerate(customers, start=1):
        city = CITIES[(i - 1) % len(CITIES)] if i <= len(CITIES) else rng.choice(CITIES)
        lines.append(f"INSERT INTO customers VALUES ({i}, '{name}', '{city}');")
    buyers = list(range(1, len(customers) - 2))  # the last three customers never order
    totals = rng.sample(range(500, 130_000, 37), 160)
    for i, total in enumerate(totals, start=1):
        placed = f"{rng.choice(YEARS)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        lines.append(f"INSERT INTO orders VALUES ({i}, {rng.choice(buyers)}, {total}, '{placed}');")
    return "\n".join(lines) + "\n"


def main() -> None:
    (Path(__file__).parent / "shop.sql").write_text(database_script(), encoding="utf-8")
    pairs = qa_pairs(N_TRAIN + N_EVAL)
    rng = random.Random(SEED + 1)
    rng.shuffle(pairs)
    here = Path(__file__).parent / "data"
    write_jsonl(here / "train.jsonl", [chat_row(q, s) for q, s in pairs[:N_TRAIN]])
    write_jsonl(here / "eval.jsonl", [chat_row(q, s) for q, s in pairs[N_TRAIN:]])
    print(f"wrote {N_TRAIN} train and {N_EVAL} eval rows to {here}, and shop.sql")


if __name__ == "__main__":
    main()
