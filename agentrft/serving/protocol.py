"""Request bodies of the serving API: OpenAI's fields, plus the extras vLLM documents for
token-in/token-out use. Unknown keys are 400s that name the key.

Extras (vLLM's names and meanings):

- `return_token_ids: true` — the response carries the sampled ids (`choices[i].token_ids`)
  and the prompt's ids (`prompt_token_ids`: top level for chat, per choice for completions).
- `return_tokens_as_token_ids: true` — every token string in `logprobs` is `"token_id:N"`,
  so ids survive tokens that are not valid UTF-8 on their own.
- `stop_token_ids` — more ids that end a completion (the template's end-of-turn and EOS
  always do); `skip_special_tokens` (default true) for the returned text.
- `prompt` of `/v1/completions` may be token ids (`[1, 2, 3]` or a batch `[[1, 2], [3]]`):
  a batch is sampled in one engine call, which is what the remote engine sends.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_N = 16
MAX_TOP_LOGPROBS = 20


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class StreamOptions(_Body):
    include_usage: bool = False
    continuous_usage_stats: bool = False


class _Sampling(_Body):
    model: str
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=MAX_N)
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] = Field(default_factory=list)
    skip_special_tokens: bool = True
    return_token_ids: bool = False
    return_tokens_as_token_ids: bool = False
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    user: str | None = None

    @model_validator(mode="after")
    def _supported(self) -> "_Sampling":
        if self.stop:  # strings would cut text mid-token: the ids would no longer be the text
            raise ValueError("stop strings are not supported; use stop_token_ids")
        if self.presence_penalty or self.frequency_penalty:
            raise ValueError("presence_penalty and frequency_penalty are not supported (use 0)")
        return self


class ChatRequest(_Sampling):
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    chat_template_kwargs: dict[str, Any] | None = None
    # text | json_object | json_schema: the last two decoded under a grammar (structured.py)
    response_format: dict[str, Any] | None = None

    @property
    def new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=1)
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool = False
    suffix: str | None = None

    @model_validator(mode="after")
    def _prompt(self) -> "CompletionRequest":
        if self.echo:
            raise ValueError("echo is not supported")
        if self.suffix:
            raise ValueError("suffix is not supported")
        if isinstance(self.prompt, list) and not self.prompt:
            raise ValueError("prompt is empty")
        return self


class LoadAdapterRequest(_Body):
    lora_name: str = Field(min_length=1, max_length=256)
    lora_path: str = Field(min_length=1)
    load_inplace: bool = False


class UnloadAdapterRequest(_Body):
    lora_name: str = Field(min_length=1)
    lora_int_id: int | None = None
