"""Chat rendering with tools, in token ids, one piece at a time.

A rollout's token sequence is built by appending, never by re-rendering the whole
conversation, so training sees exactly the ids that were sampled (token-in, token-out):

    prompt_ids(messages, tools)         system/user/… + generation prompt      (mask 0)
    <sampled assistant tokens>                                                 (mask 1)
    close_turn_ids(sampled)             what the template puts after a turn    (mask 0)
    tool_results_ids(tool_messages)     tool messages + generation prompt      (mask 0)
    <sampled assistant tokens> …

Templates that accept `tools=` get the tool schemas natively. For the others (SmolLM2's
among them) one fallback: the schemas go into the system message with an instruction to
write `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`; demonstration messages with
OpenAI-style `tool_calls` are rendered as that text.
"""

from __future__ import annotations

import json
from typing import Any

from agentrft.models.toolcalls import CLOSE, OPEN, format_call

FALLBACK_INSTRUCTIONS = (
    "You can call tools. Their JSON schemas:\n<tools>\n{schemas}\n</tools>\n"
    'To call a tool, write ' + OPEN + '{{"name": "TOOL", "arguments": {{...}}}}' + CLOSE + '. '
    "You may write several calls in one reply. Each result comes back in a message from "
    "the tool. When you know the answer, reply with the answer and no tool call."
)

# A neutral conversation used to read off what the template writes around a turn.
_ANCHOR = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
           {"role": "assistant", "content": "A"}]


class ChatRenderer:
    def __init__(self, tokenizer):
        self.tok = tokenizer
        template = tokenizer.chat_template or ""
        self.native_tools = "tools" in template
        self.has_thinking = "enable_thinking" in template or "<think>" in template
        anchor = self._render(_ANCHOR, add_generation_prompt=False)
        self._after_turn = anchor[anchor.rindex("A") + 1:]  # e.g. "<|im_end|>\n"
        self._anchor_text = anchor
        stop = {tokenizer.eos_token_id}
        for name in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<end_of_turn>"):
            tid = tokenizer.convert_tokens_to_ids(name)
            if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid is not None:
                stop.add(tid)
        self.stop_token_ids: tuple[int, ...] = tuple(sorted(t for t in stop if t is not None))

    def _render(self, messages, *, add_generation_prompt: bool, tools=None, **template_kwargs) -> str:
        kwargs: dict[str, Any] = dict(template_kwargs)
        if tools and self.native_tools:
            kwargs["tools"] = tools
        return self.tok.apply_chat_template(messages, tokenize=False,
                                            add_generation_prompt=add_generation_prompt, **kwargs)

    def _encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)

    def normalize(self, messages: list[dict], tools: list[dict]) -> list[dict]:
        """Messages as the template will see them (fallback: tools into the system message)."""
        out = []
        for m in messages:
            m = dict(m)
            if m["role"] == "developer":
                m["role"] = "system"
            if not self.native_tools and m.get("tool_calls"):
                calls = [format_call(c["function"]["name"], c["function"]["arguments"])
                         for c in m.pop("tool_calls")]
                m["content"] = "\n".join(([m["content"]] if m.get("content") else []) + calls)
            if not self.native_tools:
                m.pop("tool_call_id", None)
                m.pop("name", None)
            m["content"] = m.get("content") or ""
            out.append(m)
        if tools and not self.native_tools:
            schemas = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
            block = FALLBACK_INSTRUCTIONS.format(schemas=schemas)
            if out and out[0]["role"] == "system":
                out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + block}
            else:
                out.insert(0, {"role": "system", "content": block})
        return out

    def prompt_ids(self, messages: list[dict], tools: list[dict], **template_kwargs) -> list[int]:
        """`template_kwargs`: more variables for the template (`enable_thinking=False`)."""
        text = self._render(self.normalize(messages, tools), add_generation_prompt=True, tools=tools,
                            **template_kwargs)
        return self._encode(text)

    def close_turn_ids(self, sampled_ids: list[int]) -> list[int]:
        """Ids the template writes after an assistant turn that the model did not write itself."""
        after = self._after_turn
        if sampled_ids and sampled_ids[-1] in self.stop_token_ids:
            stop_text = self.tok.decode([sampled_ids[-1]])
            if after.startswith(stop_text):
                after = after[len(stop_text):]
        return self._encode(after) if after else []

    def tool_results_ids(self, tool_messages: list[dict]) -> list[int]:
        """Tool messages followed by the generation prompt for the next assistant turn."""
        msgs = self.normalize(tool_messages, [])
        full = self._render(_ANCHOR + msgs, add_generation_prompt=True)
        if not full.startswith(self._anchor_text):
            raise ValueError("chat template renders tool messages in a way agentrft cannot append")
        return self._encode(full[len(self._anchor_text):])
