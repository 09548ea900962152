#!/usr/bin/env python3
"""Every table has one module that writes it (docs/architecture.md, "Who writes which table").

Scans the Swift sources of Services/, Shared/ and Tools/ for INSERT INTO, UPDATE, DELETE FROM and COPY
... FROM STDIN, and fails when a module writes a table it does not own or a written table is
missing from the map. Fixtures (the benchmarks' synthetic market) are not product code and, like
Tests/, are not scanned.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRITE = re.compile(r'\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+([a-z_][a-z0-9_]*)\b|\bCOPY\s+([a-z_][a-z0-9_]*)\s*(?:\(|FROM\b)|copy\(into:\s*"([a-z_][a-z0-9_]*)"')
NOT_TABLES = {'set', 'of', 'nowait', 'skip'}
FIXTURES = {'Tools/Bench/BenchFixtures.swift'}


def module(path):
    parts = path.split('/')
    if parts[0] == 'Services' and len(parts) > 3 and parts[2] in ('App', 'Core', 'Main'):
        return '/'.join(parts[:3])
    return '/'.join(parts[:2])


def writers():
    found = {}
    for base in ('Services', 'Shared', 'Tools'):
        for folder, _, files in os.walk(os.path.join(ROOT, base)):
            for name in files:
                if not name.endswith('.swift'):
                    continue
                path = os.path.relpath(os.path.join(folder, name), ROOT)
                if path in FIXTURES:
                    continue
                text = open(os.path.join(ROOT, path), encoding='utf-8').read()
                for m in WRITE.finditer(text):
                    table = m.group(1) or m.group(2) or m.group(3)
                    if table in NOT_TABLES:
                        continue
                    found.setdefault(table, {}).setdefault(module(path), set()).add(path)
    return found


def ownership():
    text = open(os.path.join(ROOT, 'docs/architecture.md'), encoding='utf-8').read()
    section = text.split('## Who writes which table', 1)[1].split('\n## ', 1)[0]
    owners = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) < 2 or not cells[0].startswith('`'):
            continue
        owners[cells[0].strip('`')] = cells[1].strip('`')
    return owners


def main():
    found, owners = writers(), ownership()
    problems = []
    for table, modules in sorted(found.items()):
        if table not in owners:
            problems.append(f'{table}: written by {sorted(modules)} but has no owner in docs/architecture.md')
            continue
        for mod, paths in sorted(modules.items()):
            if mod != owners[table]:
                problems.append(f'{table}: written by {mod} ({", ".join(sorted(paths))}); its owner is {owners[table]}')
    if problems:
        print('table ownership:', *problems, sep='\n  ')
        return 1
    print(f'table ownership: {len(owners)} tables, each written by its owner only')
    return 0


if __name__ == '__main__':
    sys.exit(main())
