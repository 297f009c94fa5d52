"""The advisor's case table: answers -> expected route, method, adapter and a rule that must fire.

Shared by tests/advisor/test_advisor_rules.py (one test per rule id, every rule covered, every route reachable) and
tests/advisor/test_advisor_planner.py (every case's plan loads through core.plan.load_plan).
"""

GPU80 = {"gpu_memory_gb": 80, "gpu_count": 1}

# (case id, answers, route, method, adapter, rule id that must fire)
CASES = [
    ("facts", {"goal": "facts"}, "rag", None, None, "facts-rag"),
    ("facts-often", {"goal": "facts", "knowledge_changes": "often"}, "rag", None, None, "facts-changing"),
    ("facts-private", {"goal": "facts", "private_data": True}, "rag", None, None, "facts-private"),
    ("corpus-50M", {"goal": "domain_language", "domain_corpus_tokens": 50_000_000, **GPU80},
     "continued_pretraining", None, "lora", "domain-language-cpt"),
    ("corpus-50M-lora", {"goal": "domain_language", "domain_corpus_tokens": 50_000_000, **GPU80},
     "continued_pretraining", None, "lora", "adapter-lora-cpt"),
    ("corpus-50M-sft-after", {"goal": "domain_language", "domain_corpus_tokens": 50_000_000, **GPU80},
     "continued_pretraining", None, "lora", "cpt-then-sft"),
    ("corpus-below-50M", {"goal": "domain_language", "domain_corpus_tokens": 49_999_999},
     "rag", None, None, "domain-language-rag"),
    ("new-capability", {"goal": "new_capability"}, "bigger_model", None, None, "new-capability-bigger"),
    ("prompt-fails", {"goal": "schema", "prompting_result": "fails"}, "bigger_model", None, None,
     "prompting-fails-bigger"),
    ("prompt-fails-shorten", {"goal": "shorten_prompt", "prompting_result": "fails"}, "bigger_model", None, None,
     "prompting-fails-bigger"),
    ("shorten-10M", {"goal": "shorten_prompt", "prompt_tokens": 1000, "requests_per_day": 10_000, **GPU80},
     "fine_tuning", "sft", "lora", "shorten-prompt-sft"),
    ("shorten-below-10M", {"goal": "shorten_prompt", "prompt_tokens": 1000, "requests_per_day": 9_999},
     "prompting", None, None, "shorten-prompt-caching"),
    ("preferences-both", {"goal": "preferences", "preference_pairs": 200, "labeled_examples": 100, **GPU80},
     "fine_tuning", "sft_then_dpo", "lora", "preferences-sft-dpo"),
    ("preferences-pairs", {"goal": "preferences", "preference_pairs": 200, "labeled_examples": 99, **GPU80},
     "fine_tuning", "dpo", "lora", "preferences-dpo"),
    ("preferences-few", {"goal": "preferences", "preference_pairs": 199, "labeled_examples": 5000},
     "prompting", None, None, "preferences-collect"),
    ("style-untried", {"goal": "style", "prompting_result": "untried"}, "prompting", None, None, "prompting-first"),
    ("domain-task-good", {"goal": "domain_task", "prompting_result": "good_enough", "labeled_examples": 9000},
     "prompting", None, None, "prompting-first"),
    ("schema-sft-dpo", {"goal": "schema", "prompting_result": "inconsistent", "labeled_examples": 100,
                        "preference_pairs": 200, **GPU80}, "fine_tuning", "sft_then_dpo", "lora", "inconsistent-sft-dpo"),
    ("task-sft", {"goal": "domain_task", "prompting_result": "inconsistent", "labeled_examples": 100, **GPU80},
     "fine_tuning", "sft", "lora", "inconsistent-sft"),
    ("task-sft-lora", {"goal": "domain_task", "prompting_result": "inconsistent", "labeled_examples": 100, **GPU80},
     "fine_tuning", "sft", "lora", "adapter-lora"),
    ("style-few-shot", {"goal": "style", "prompting_result": "inconsistent", "labeled_examples": 99},
     "prompting", None, None, "inconsistent-few-shot"),
    ("full", {"goal": "schema", "prompting_result": "inconsistent", "labeled_examples": 10_000,
              "keep_general_skills": False, "base_model_params_b": 7, **GPU80}, "fine_tuning", "sft", "full", "adapter-full"),
    ("full-forgets", {"goal": "schema", "prompting_result": "inconsistent", "labeled_examples": 10_000,
                      "keep_general_skills": False, "base_model_params_b": 7, **GPU80}, "fine_tuning", "sft", "full",
     "full-forgets"),
    ("full-needs-10k", {"goal": "schema", "prompting_result": "inconsistent", "labeled_examples": 9_999,
                        "keep_general_skills": False, "base_model_params_b": 7, **GPU80}, "fine_tuning", "sft", "lora",
     "adapter-lora"),
    ("full-cpt", {"goal": "domain_language", "domain_corpus_tokens": 100_000_000, "keep_general_skills": False,
                  "base_model_params_b": 1, **GPU80}, "continued_pretraining", None, "full", "adapter-full-cpt"),
    ("qlora", {"goal": "schema", "prompting_result": "inconsistent", "labeled_examples": 2000,
               "gpu_memory_gb": 16, "gpu_count": 1, "base_model_params_b": 7}, "fine_tuning", "sft", "qlora",
     "adapter-qlora"),
    ("nothing-fits", {"goal": "schema", "prompting_result": "inconsistent", "labeled_examples": 2000,
                      "gpu_memory_gb": 8, "gpu_count": 1, "base_model_params_b": 70}, "fine_tuning", "sft", "lora",
     "nothing-fits"),
    ("no-gpu", {"goal": "domain_task", "prompting_result": "inconsistent", "labeled_examples": 500},
     "fine_tuning", "sft", "lora", "no-gpu"),
    ("budget-cpt", {"goal": "domain_language", "domain_corpus_tokens": 2_000_000_000, "gpu_memory_gb": 80,
                    "gpu_count": 8, "budget_usd": 10}, "rag", None, None, "budget-cpt-to-rag"),
    ("budget-ft", {"goal": "schema", "prompting_result": "inconsistent", "labeled_examples": 2000,
                   "budget_usd": 0.01, **GPU80}, "prompting", None, None, "budget-ft-to-prompting"),
]

# The four examples written in the issue.
ISSUE_EXAMPLES = [
    ({"goal": "facts", "knowledge_changes": "often"}, ("rag", None, None)),
    ({"goal": "style", "prompting_result": "untried"}, ("prompting", None, None)),
    ({"goal": "schema", "prompting_result": "inconsistent", "labeled_examples": 2000, "gpu_memory_gb": 80,
      "gpu_count": 1, "base_model_params_b": 7}, ("fine_tuning", "sft", "lora")),
    ({"goal": "new_capability"}, ("bigger_model", None, None)),
]
