"""Tool calls read back from text in every wrapper the fixtures' templates write (data/toolcalls.py)."""
from __future__ import annotations

from shipsft.data.toolcalls import ToolCall, call_text, message_tool_calls, parse_tool_calls

WEATHER = ToolCall("get_weather", {"city": "Oslo", "unit": "celsius"})


def test_every_wrapper_gives_the_same_call():
    texts = {
        "hermes": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}'
                  '\n</tool_call>',
        "llama": '{"name": "get_weather", "parameters": {"city": "Oslo", "unit": "celsius"}}',
        "mistral": '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}]',
        "openai": '{"type": "function", "function": {"name": "get_weather", '
                  '"arguments": "{\\"city\\": \\"Oslo\\", \\"unit\\": \\"celsius\\"}"}}',
        "preamble": 'Let me check. <tool_call>{"name": "get_weather", "arguments": {"city": "Oslo", "unit": '
                    '"celsius"}}</tool_call> One moment.',
    }
    for name, text in texts.items():
        assert parse_tool_calls(text) == [WEATHER], name


def test_several_calls_in_order_and_what_is_not_a_call():
    two = ('<tool_call>{"name": "a", "arguments": {}}</tool_call>\n'
           '<tool_call>{"name": "b", "arguments": {"x": [1, {"y": 2}]}}</tool_call>')
    assert parse_tool_calls(two) == [ToolCall("a", {}), ToolCall("b", {"x": [1, {"y": 2}]})]
    assert parse_tool_calls("It is 12 degrees in Oslo.") == []
    assert parse_tool_calls('{"status": "ok", "alarm_id": 3}') == []  # a JSON answer, not a call
    assert parse_tool_calls('{"name": "a"}') == []  # no arguments: not a call
    assert parse_tool_calls('{"name": "a", "arguments": "not json"}') == []
    assert parse_tool_calls('<tool_call>{"name": "a", "arguments": {"x": 1}</tool_call>') == []  # unbalanced
    # a call inside a non-call wrapper object is still found
    assert parse_tool_calls('{"calls": {"name": "a", "arguments": {"x": 1}}}') == [ToolCall("a", {"x": 1})]


def test_structured_calls_and_their_text_round_trip():
    msg = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "unit": "celsius"}'}},
        {"type": "function", "function": {"name": "noop", "arguments": {}}}]}
    calls = message_tool_calls(msg)
    assert calls == [WEATHER, ToolCall("noop", {})]
    assert call_text(calls) == ('<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}'
                                '</tool_call>\n<tool_call>{"name": "noop", "arguments": {}}</tool_call>')
    assert parse_tool_calls(call_text(calls)) == calls
