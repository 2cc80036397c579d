"""The docs site: ``mkdocs build --strict`` passes (no broken link or anchor), English and Korean have the
same pages, and the generated reference covers every setting of the config Structs, every route of the
OpenAPI document and every CLI command — in both languages."""

from __future__ import annotations

import html
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from config import Config

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
LANGUAGES = {"en": "", "ko": "ko/"}  # English at the site root, Korean under /ko/


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    return out


def _page(site: Path, lang: str, page: str) -> str:
    return html.unescape((site / LANGUAGES[lang] / page / "index.html").read_text())


def _settings() -> list[str]:
    """Dotted paths of every leaf setting, walked independently of the docs generator."""
    paths: list[str] = []

    def walk(struct: msgspec.inspect.StructType, prefix: str) -> None:
        for field in struct.fields:
            kinds = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
            nested = next((k for k in kinds if isinstance(k, msgspec.inspect.StructType)), None)
            if nested is None:
                paths.append(prefix + field.name)
            else:
                walk(nested, f"{prefix}{field.name}.")

    walk(msgspec.inspect.type_info(Config), "")
    return paths


def _routes() -> list[tuple[str, str]]:
    from types import SimpleNamespace

    from transport.http import Edge, create_app
    from transport.openapi import document

    stand_in = SimpleNamespace(metrics=SimpleNamespace(registry=CollectorRegistry()))
    schema = document(create_app(Edge(system=stand_in)))
    return [(method.upper(), path) for path, item in schema["paths"].items()
            for method in item if method in ("get", "put", "post", "delete", "patch")]


def test_english_and_korean_have_the_same_pages(site: Path) -> None:
    sources = {lang: sorted(p.relative_to(DOCS / lang).as_posix() for p in (DOCS / lang).rglob("*.md"))
               for lang in LANGUAGES}
    assert sources["en"] == sources["ko"] and "operations.md" in sources["en"]
    built = {lang: sorted(p.relative_to(site / prefix).as_posix() for p in (site / prefix).rglob("index.html")
                          if lang == "ko" or not p.relative_to(site).as_posix().startswith("ko/"))
             for lang, prefix in LANGUAGES.items()}
    assert built["en"] == built["ko"] and len(built["en"]) == len(sources["en"])
    assert "설정 레퍼런스" in _page(site, "ko", "reference/configuration")


def test_every_setting_route_and_cli_command_is_documented_in_both_languages(site: Path) -> None:
    settings, routes = _settings(), _routes()
    assert "worldservice.apply.activation_gap_timeout_ms" in settings and len(routes) > 40
    for lang in LANGUAGES:
        config_page = _page(site, lang, "reference/configuration")
        assert [s for s in settings if f"<code>{s}</code>" not in config_page] == [], lang
        api_page = _page(site, lang, "reference/api")
        assert [r for r in routes if f"<code>{r[0]} {r[1]}</code>" not in api_page] == [], lang
        cli_page = _page(site, lang, "reference/cli")
        for command in ("list", "show", "describe", "create", "update", "delete", "policy upload", "policy list",
                        "policy show", "policy set-default", "activation get", "activation set", "decide",
                        "evaluate", "apply start", "apply status", "allocations", "audit"):
            assert f"<code>worldservice world {command}</code>" in cli_page, (lang, command)
        operations = _page(site, lang, "operations")
        for anchor in ("redis-loss", "broker-outage", "a-run-stuck-awaiting-acks", "a-fenced-instance",
                       "database-failover"):
            assert f'id="{anchor}"' in operations, (lang, anchor)
