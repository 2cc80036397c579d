"""mkdocs hook: the reference pages are generated from the code on every build, in both languages, so they
cannot drift from it — the configuration from the config Structs, the HTTP API from the OpenAPI document the
daemon serves, the CLI from its command tree. Files are rewritten only when their text changes (so
``mkdocs serve`` does not rebuild forever); they are not committed (``.gitignore``)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import typer
from prometheus_client import CollectorRegistry

DOCS = Path(__file__).resolve().parent.parent
LANGUAGES = ("en", "ko")
WORDS = {
    "en": {"config": "Configuration reference", "api": "HTTP API", "cli": "CLI reference", "setting": "setting",
           "type": "type", "default": "default", "env": "environment variable", "param": "parameter", "in": "in",
           "required": "required", "answers": "answers", "body": "request body", "usage": "usage",
           "status": "status", "answer_body": "body", "when": "when",
           "option": "option", "help": "meaning", "yes": "yes", "no": "no", "unset": "unset",
           "config_intro": "Generated from the config Structs (`config/loader.py`) on every docs build. Sources, "
                           "lowest first: built-in defaults, a YAML or TOML file (`--config` or `WORLDSERVICE__CONFIG`), "
                           "environment variables, command-line flags.",
           "api_intro": "Generated from the OpenAPI document the daemon serves (`GET /openapi.json`); the same "
                        "document is here as [openapi.json](openapi.json).",
           "cli_intro": "Generated from the command tree of `worldservice world`. Exit codes: 0 ok, 1 refused "
                        "(the daemon's `detail` on stderr), 2 usage, 3 unreachable, 130 Ctrl-C while following an apply."},
    "ko": {"config": "설정 레퍼런스", "api": "HTTP API", "cli": "CLI 레퍼런스", "setting": "설정", "type": "타입",
           "default": "기본값", "env": "환경 변수", "param": "파라미터", "in": "위치", "required": "필수",
           "answers": "응답", "body": "요청 본문", "usage": "사용법", "option": "옵션", "help": "의미",
           "status": "상태 코드", "answer_body": "본문", "when": "언제",
           "yes": "예", "no": "아니오", "unset": "없음",
           "config_intro": "문서를 빌드할 때마다 설정 Struct(`config/loader.py`)에서 생성됩니다. 우선순위(낮은 것부터): "
                           "내장 기본값, YAML 또는 TOML 파일(`--config` 또는 `WORLDSERVICE__CONFIG`), 환경 변수, "
                           "명령행 플래그.",
           "api_intro": "데몬이 제공하는 OpenAPI 문서(`GET /openapi.json`)에서 생성됩니다. 같은 문서를 "
                        "[openapi.json](openapi.json)으로 받을 수 있습니다.",
           "cli_intro": "`worldservice world`의 명령 트리에서 생성됩니다. 종료 코드: 0 성공, 1 거부(데몬의 `detail`을 "
                        "stderr로 출력), 2 사용법 오류, 3 데몬에 연결할 수 없음, 130 apply를 지켜보다 Ctrl-C."},
}


def on_pre_build(config: Any) -> None:
    pages = {"configuration.md": configuration_page, "api.md": api_page, "cli.md": cli_page}
    schema = openapi_document()
    for lang in LANGUAGES:
        folder = DOCS / lang / "reference"
        folder.mkdir(parents=True, exist_ok=True)
        for name, render in pages.items():
            _write(folder / name, render(WORDS[lang], schema))
        _write(folder / "openapi.json", json.dumps(schema, indent=2, sort_keys=True) + "\n")


def _write(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


# --- configuration -------------------------------------------------------------------------------

def settings() -> list[tuple[str, Any]]:
    """Every leaf setting of ``Config`` as (dotted path, msgspec field), in declaration order."""
    from config import Config

    out: list[tuple[str, Any]] = []

    def walk(struct: Any, prefix: str) -> None:
        for field in struct.fields:
            nested = _struct_of(field.type)
            if nested is not None:
                walk(nested, f"{prefix}{field.name}.")
            else:
                out.append((f"{prefix}{field.name}", field))

    walk(msgspec.inspect.type_info(Config), "")
    return out


def _struct_of(kind: Any) -> Any:
    if isinstance(kind, msgspec.inspect.StructType):
        return kind
    if isinstance(kind, msgspec.inspect.UnionType):
        structs = [t for t in kind.types if isinstance(t, msgspec.inspect.StructType)]
        return structs[0] if structs else None
    return None


def type_text(kind: Any) -> str:
    i = msgspec.inspect
    names = {i.StrType: "string", i.IntType: "integer", i.FloatType: "number", i.BoolType: "boolean", i.NoneType: "null"}
    if isinstance(kind, i.LiteralType):
        return " \\| ".join(f"`{v}`" for v in kind.values)
    if isinstance(kind, i.UnionType):
        return " \\| ".join(type_text(t) for t in kind.types)
    if isinstance(kind, i.ListType):
        return f"list of {type_text(kind.item_type)}"
    if isinstance(kind, i.DictType):
        return f"map {type_text(kind.key_type)} → {type_text(kind.value_type)}"
    text = names.get(type(kind), type(kind).__name__)
    bounds = [f"{op} {getattr(kind, attr)}" for attr, op in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))
              if getattr(kind, attr, None) is not None]
    return f"{text} ({', '.join(bounds)})" if bounds else text


def _default(field: Any, words: dict[str, str]) -> str:
    value = field.default_factory() if field.default is msgspec.NODEFAULT else field.default
    return words["unset"] if value is None else f"`{json.dumps(value, ensure_ascii=False)}`"


def configuration_page(words: dict[str, str], _schema: dict[str, Any]) -> str:
    lines = [f"# {words['config']}", "", words["config_intro"], "",
             f"| {words['setting']} | {words['type']} | {words['default']} | {words['env']} |", "|---|---|---|---|"]
    for path, field in settings():
        env = "WORLDSERVICE__" + "__".join(path.split(".")[1:] if path.startswith("worldservice.") else [path]).upper()
        lines.append(f"| `{path}` | {type_text(field.type)} | {_default(field, words)} | `{env}` |")
    return "\n".join(lines) + "\n"


# --- HTTP API ------------------------------------------------------------------------------------

def openapi_document() -> dict[str, Any]:
    """The document ``GET /openapi.json`` serves. Building it needs only the route table, not a running
    actor system: the edge gets a stand-in that carries a metrics registry."""
    from transport.http import Edge, create_app
    from transport.openapi import document

    stand_in = SimpleNamespace(metrics=SimpleNamespace(registry=CollectorRegistry()))
    return json.loads(msgspec.json.encode(document(create_app(Edge(system=stand_in)))))


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    methods = ("get", "put", "post", "delete", "patch")
    return [(method.upper(), path, op) for path, item in sorted(schema["paths"].items())
            for method, op in item.items() if method in methods]


def api_page(words: dict[str, str], schema: dict[str, Any]) -> str:
    lines = [f"# {words['api']}", "", words["api_intro"], ""]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for method, path, op in operations(schema):
        by_tag.setdefault((op.get("tags") or ["other"])[0], []).append((method, path, op))
    for tag, ops in sorted(by_tag.items()):
        lines += [f"## {tag}", ""]
        for method, path, op in ops:
            lines += _operation(words, method, path, op)
    return "\n".join(lines) + "\n"


def _operation(words: dict[str, str], method: str, path: str, op: dict[str, Any]) -> list[str]:
    lines = [f"### `{method} {path}`", ""]
    if op.get("description") or op.get("summary"):
        lines += [(op.get("description") or op["summary"]).strip().replace("\n", " "), ""]
    lines += _parameters(words, op.get("parameters") or [])
    body = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
    if body:
        lines += [f"{words['body']}: {_schema_text(body)}", ""]
    return lines + _answers(words, op.get("responses") or {})


def _parameters(words: dict[str, str], params: list[dict[str, Any]]) -> list[str]:
    if not params:
        return []
    lines = [f"| {words['param']} | {words['in']} | {words['required']} | {words['type']} |", "|---|---|---|---|"]
    for p in params:
        kind = _schema_text(p.get("schema") or {})
        lines.append(f"| `{p['name']}` | {p['in']} | {words['yes'] if p.get('required') else words['no']} | {kind} |")
    return lines + [""]


def _answers(words: dict[str, str], responses: dict[str, Any]) -> list[str]:
    lines = [f"{words['answers']}:", "", f"| {words['status']} | {words['answer_body']} | {words['when']} |",
             "|---|---|---|"]
    for code, answer in sorted(responses.items()):
        schema = (answer.get("content") or {}).get("application/json", {}).get("schema")
        when = (answer.get("description") or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{code}` | {_schema_text(schema) if schema else '-'} | {when} |")
    return lines + [""]


# What validation enforces on a scalar, as the document says it (patterns, lengths, bounds, enums).
_CONSTRAINTS = (("pattern", "pattern"), ("minLength", "min length"), ("maxLength", "max length"),
                ("minimum", ">="), ("maximum", "<="))


def _schema_text(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return f"`{schema['$ref'].rsplit('/', 1)[-1]}`"
    if "oneOf" in schema or "anyOf" in schema:
        return " \\| ".join(_schema_text(s) for s in schema.get("oneOf") or schema["anyOf"])
    if "enum" in schema:
        return " \\| ".join(f"`{value}`" for value in schema["enum"] if value is not None)
    return _scalar_text(schema)


def _scalar_text(schema: dict[str, Any]) -> str:
    limits = [f"{word} `{schema[key]}`".replace("|", "\\|") for key, word in _CONSTRAINTS if key in schema]
    kind = f"`{schema.get('type', 'object')}`"
    return f"{kind} ({', '.join(limits)})" if limits else kind


# --- CLI -----------------------------------------------------------------------------------------

def commands() -> list[tuple[str, Any]]:
    """Every leaf command of ``worldservice world`` with its full name (typer carries its own click)."""
    from cli.main import app

    out: list[tuple[str, Any]] = []

    def walk(command: Any, name: str) -> None:
        if hasattr(command, "commands"):
            if any(p.param_type_name == "option" and p.name != "help" for p in command.params):
                out.append((name, command))  # the global options
            for sub_name, sub in sorted(command.commands.items()):
                walk(sub, f"{name} {sub_name}")
        else:
            out.append((name, command))

    walk(typer.main.get_command(app), "worldservice world")
    return out


def _option_row(option: Any) -> str:
    flags = ", ".join(f"`{flag}`" for flag in option.opts + option.secondary_opts)
    default = "" if option.default in (None, False, ()) or option.required else f"`{option.default}`"
    return f"| {flags} | {default} | {(option.help or '').replace('|', '/')} |"


def _options_table(words: dict[str, str], command: Any) -> list[str]:
    options = [p for p in command.params if p.param_type_name == "option" and p.name != "help"]
    if not options:
        return []
    header = [f"| {words['option']} | {words['default']} | {words['help']} |", "|---|---|---|"]
    return header + [_option_row(option) for option in options] + [""]


def cli_page(words: dict[str, str], _schema: dict[str, Any]) -> str:
    lines = [f"# {words['cli']}", "", words["cli_intro"], ""]
    for name, command in commands():
        ctx = typer.Context(command, info_name=name)
        usage = command.get_usage(ctx).removeprefix("Usage: ")
        lines += [f"## `{name}`", "", (command.help or "").strip(), "", f"{words['usage']}: `{usage}`", ""]
        lines += _options_table(words, command)
    return "\n".join(lines) + "\n"
