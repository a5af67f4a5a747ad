"""The instruct templates text-completions mode ships with (seeded by a migration)."""

# The instruct formats text-completions mode ships with; operators edit them in admin.
PRESETS = [
    {
        "name": "ChatML",
        "system_prefix": "<|im_start|>system\n",
        "system_suffix": "<|im_end|>\n",
        "user_prefix": "<|im_start|>user\n",
        "user_suffix": "<|im_end|>\n",
        "assistant_prefix": "<|im_start|>assistant\n",
        "assistant_suffix": "<|im_end|>\n",
        "stop_strings": ["<|im_end|>", "<|im_start|>"],
    },
    {
        "name": "Llama 3",
        "prompt_prefix": "<|begin_of_text|>",
        "system_prefix": "<|start_header_id|>system<|end_header_id|>\n\n",
        "system_suffix": "<|eot_id|>",
        "user_prefix": "<|start_header_id|>user<|end_header_id|>\n\n",
        "user_suffix": "<|eot_id|>",
        "assistant_prefix": "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "assistant_suffix": "<|eot_id|>",
        "stop_strings": ["<|eot_id|>", "<|start_header_id|>"],
    },
    {
        "name": "Mistral",
        "prompt_prefix": "<s>",
        "system_as_user": True,
        "user_prefix": "[INST] ",
        "user_suffix": " [/INST]",
        "assistant_prefix": "",
        "assistant_suffix": "</s>",
        "stop_strings": ["</s>", "[INST]"],
    },
    {
        "name": "Alpaca",
        "system_prefix": "",
        "system_suffix": "\n\n",
        "user_prefix": "### Instruction:\n",
        "user_suffix": "\n\n",
        "assistant_prefix": "### Response:\n",
        "assistant_suffix": "\n\n",
        "stop_strings": ["### Instruction:", "### Response:"],
    },
    {
        "name": "Vicuna",
        "system_prefix": "",
        "system_suffix": "\n\n",
        "user_prefix": "USER: ",
        "user_suffix": "\n",
        "assistant_prefix": "ASSISTANT: ",
        "assistant_suffix": "</s>\n",
        "stop_strings": ["USER:", "</s>"],
    },
    {
        "name": "Gemma",
        "system_as_user": True,
        "user_prefix": "<start_of_turn>user\n",
        "user_suffix": "<end_of_turn>\n",
        "assistant_prefix": "<start_of_turn>model\n",
        "assistant_suffix": "<end_of_turn>\n",
        "stop_strings": ["<end_of_turn>", "<start_of_turn>"],
    },
]


def ensure_presets(InstructTemplate) -> None:
    """Create any shipped preset that is missing; edited ones are left as they are."""
    for preset in PRESETS:
        InstructTemplate.objects.get_or_create(name=preset["name"], defaults=preset)
