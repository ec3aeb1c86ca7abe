"""Resolve the candidate package lists below to a pinned manifest.json.

Run once by a maintainer (it asks the registries for the current versions); the build
itself only reads manifest.json, so rebuilds fetch exactly the same artifacts (checked by
sha256 / npm integrity). Packages whose registry license is not permissive, or that have
no source distribution, are left out with a printed reason.

    python models/toolchain/corpus/make_manifest.py            # writes manifest.json
"""
import json
import os
import sys
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the toolchain: atomic.py
import licenses  # noqa: E402
from atomic import atomic_write_text  # noqa: E402

NPM_REGISTRY = "https://registry.npmjs.org"   # `npm config get registry` on this machine
PYPI_INDEX = "https://pypi.org"               # pip's default index (no index-url configured)

# name or name@version. Popular, permissive, and shipping readable source (not only bundles).
NPM = """
typescript@5.9.3 @types/node @types/react @types/react-dom @types/lodash @types/jquery @types/three
@types/d3 @types/express @types/express-serve-static-core @types/jest @types/mocha @types/chrome
@types/vscode @types/google.maps @types/office-js @types/babel__traverse @types/webpack-env
@types/estree @types/ws @types/yargs @types/leaflet @types/ramda @types/bluebird @types/sinon
@types/chai @types/angular @types/lodash-es @types/jsdom @types/emscripten @types/openui5
lodash lodash-es underscore ramda rxjs three @angular/core @angular/compiler @angular/common
@angular/forms @angular/router @angular/material @angular/cdk @angular-devkit/core
@angular-devkit/schematics @angular/compiler-cli vue @vue/compiler-core @vue/compiler-sfc
@vue/runtime-core @vue/reactivity @vue/compiler-dom @vue/runtime-dom @vue/shared react react-dom
preact svelte lit lit-html @lit/reactive-element solid-js mobx redux @reduxjs/toolkit immer zod
yup effect @effect/platform @effect/schema fp-ts io-ts graphql @apollo/client eslint
@typescript-eslint/parser @typescript-eslint/typescript-estree @typescript-eslint/eslint-plugin
@typescript-eslint/utils @typescript-eslint/scope-manager webpack @babel/core @babel/parser
@babel/traverse @babel/types @babel/generator @babel/preset-env @babel/runtime acorn espree
esprima d3-array d3-scale d3-shape d3-selection d3-geo d3-force d3-hierarchy d3-interpolate
d3-color d3-format d3-time d3-zoom d3-transition d3-dsv d3-delaunay echarts zrender moment luxon
date-fns dayjs mathjs decimal.js bignumber.js bn.js ethers viem axios express koa fastify
@hapi/hapi socket.io ws mongoose sequelize typeorm knex pg mysql2 ioredis jest-circus
jest-runtime jest-snapshot @jest/core expect mocha chai sinon jasmine-core vitest
@vitest/expect playwright-core puppeteer-core cheerio jsdom htmlparser2 parse5 marked
markdown-it highlight.js prismjs @codemirror/view @codemirror/state @codemirror/language
@codemirror/autocomplete @xterm/xterm pdfjs-dist leaflet ol @cesium/engine phaser pixi.js
@babylonjs/core @tensorflow/tfjs-core @tensorflow/tfjs-layers openai @anthropic-ai/sdk
node-forge crypto-js jszip core-js tslib yargs commander chalk inquirer semver uuid glob
minimatch fs-extra async bluebird backbone jquery bootstrap ember-source handlebars ejs pug
nunjucks less postcss tailwindcss fabric konva paper matter-js tone hls.js video.js
vega vega-lite cytoscape quill prosemirror-model prosemirror-view prosemirror-state
prosemirror-transform lexical @tanstack/query-core @tanstack/table-core @tanstack/router-core
swr react-router react-hook-form formik styled-components framer-motion @stencil/core typedoc
ts-morph @ts-morph/common ts-node nx @nestjs/core @nestjs/common class-validator
class-transformer inversify @microsoft/fast-element @microsoft/signalr astro @sveltejs/kit
vite rollup terser uglify-js source-map-js magic-string chokidar esquery estraverse
ajv ajv-formats json-schema-traverse qs body-parser debug winston pino bull bullmq
mqtt nodemailer passport jsonwebtoken cookie-parser helmet multer dotenv cross-spawn execa
listr2 @octokit/rest @octokit/core @octokit/plugin-rest-endpoint-methods probot
@trpc/server @trpc/client ts-pattern @sinclair/typebox valibot hono superstruct
@tanstack/virtual-core @tanstack/form-core @tanstack/store @tanstack/query-persist-client-core
zustand xstate mobx-state-tree kysely drizzle-orm @mikro-orm/core tsyringe vscode-languageserver
vscode-jsonrpc vscode-languageserver-protocol vscode-languageclient @lezer/common @lezer/lr
@lezer/highlight @lezer/javascript @lezer/python yjs lib0 @tiptap/core @tiptap/pm @tiptap/react
@react-aria/interactions @react-aria/utils @react-aria/focus @react-stately/collections
@react-stately/utils @internationalized/date @internationalized/number @floating-ui/core
@floating-ui/dom @popperjs/core playcanvas msw @mswjs/interceptors @apollo/server
@graphql-tools/utils @urql/core @supabase/supabase-js @supabase/postgrest-js
@supabase/auth-js @supabase/realtime-js @supabase/storage-js stripe discord.js
@discordjs/builders @discordjs/rest @discordjs/ws hardhat @wagmi/core abitype ox
@solana/web3.js @types/google-apps-script @types/office-runtime @types/sharepoint @types/xrm
@types/arcgis-js-api @types/firefox-webext-browser @types/wicg-file-system-access
@types/markdown-it @types/node-red @types/bootstrap @types/hapi__hapi @types/koa @types/pg
@types/mongodb @types/jasmine @types/benchmark @types/d3-array @types/d3-scale @types/d3-shape
@types/d3-selection @types/d3-geo @types/lodash.debounce @types/uuid @types/semver @types/yargs-parser
@types/prop-types @types/react-native @types/webxr @types/offscreencanvas @types/dom-webcodecs
@types/web-bluetooth @types/w3c-web-usb @types/w3c-web-serial @types/w3c-web-hid @types/gapi
@types/gapi.client.drive-v3 @types/gapi.client.sheets-v4 @types/youtube @types/facebook-js-sdk
@types/applepayjs @types/googlepay @types/paypal-checkout-components @types/braintree-web
typescript-eslint @typescript-eslint/types @typescript-eslint/type-utils
@typescript-eslint/visitor-keys ts-api-utils tsutils @microsoft/tsdoc @microsoft/api-extractor-model
@rushstack/node-core-library @changesets/cli @changesets/assemble-release-plan
type-fest ts-essentials utility-types @total-typescript/ts-reset
"""

PYPI = """
django sympy numpy scipy pandas matplotlib scikit-learn sqlalchemy setuptools pip networkx
astropy statsmodels pygments sphinx twisted tornado aiohttp flask werkzeug jinja2 click rich
httpx pydantic fastapi attrs pytest mypy black transformers celery kombu scrapy dask
distributed xarray bokeh numba cython jax keras requests urllib3 pyyaml ipython jupyter-server
nbconvert traitlets alembic marshmallow falcon sanic starlette uvicorn gunicorn redis pymongo
pillow shapely geopandas pyproj seaborn langchain-core langchain-community langchain openai
anthropic huggingface-hub datasets accelerate diffusers peft trl sentence-transformers nltk
pytorch-lightning optuna hydra-core omegaconf sqlglot flake8 pycodestyle pyflakes isort yapf
jedi parso prompt-toolkit mkdocs poetry-core virtualenv tox nox invoke fabric sqlparse mako
python-dateutil arrow pendulum faker coverage trio anyio mpmath cvxpy pyomo simpy pymc arviz
pytensor scikit-image imageio tifffile h5py zarr fsspec s3fs beautifulsoup4 html5lib markdown
mistune markdown-it-py pyparsing lark ply toolz more-itertools boltons cattrs msgpack
google-api-core apache-airflow prefect dagster luigi mlflow wandb kubernetes openstacksdk
djangorestframework wagtail sentry-sdk pyglet kivy arcade cirq-core pennylane qiskit
sqlmodel pydantic-core typer textual httpcore h11 websockets gevent eventlet greenlet
pyzmq tqdm loguru structlog boto3 botocore s3transfer moto responses freezegun factory-boy
pytest-asyncio pytest-cov pluggy packaging platformdirs filelock tomli tomlkit docutils
sphinx-rtd-theme nbformat jupyter-client ipykernel notebook jupyterlab pyarrow polars
duckdb dash plotly altair streamlit gradio spacy thinc gensim ibis-framework great-expectations
"""


def get_json(url):
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.load(r)


def resolve_npm(spec):
    name, _, ver = spec[1:].partition("@") if spec.startswith("@") else spec.partition("@")
    if spec.startswith("@"):
        name = "@" + name
    enc = name.replace("/", "%2F")
    meta = get_json(f"{NPM_REGISTRY}/{enc}/{ver or 'latest'}")
    lic = licenses.choose([meta.get("license"), meta.get("licenses")])
    ts = any(k in meta for k in ("types", "typings")) or name.startswith("@types/")
    return {
        "name": name, "version": meta["version"], "registry": "npm",
        "language": "typescript" if ts or name == "typescript" else "javascript",
        "license": lic, "url": meta["dist"]["tarball"],
        "integrity": meta["dist"].get("integrity"), "shasum": meta["dist"].get("shasum"),
    }


def canonical_file_url(name, url):
    """The index may answer with URLs relative to the JSON page (a mirror); pin the
    canonical files.pythonhosted.org address so the manifest does not depend on it."""
    url = urllib.parse.urljoin(f"{PYPI_INDEX}/pypi/{name}/json", url)
    if "/packages/packages/" in url:
        url = "https://files.pythonhosted.org/packages/" + url.split("/packages/packages/", 1)[1]
    return url


def resolve_pypi(name):
    meta = get_json(f"{PYPI_INDEX}/pypi/{name}/json")
    info = meta["info"]
    ver = info["version"]
    sdists = [u for u in meta["releases"].get(ver, []) if u["packagetype"] == "sdist"]
    if not sdists:
        raise ValueError(f"no sdist for {name} {ver}")
    u = sdists[0]
    lic = licenses.choose([info.get("license_expression"), info.get("license"),
                           licenses.from_classifiers(info.get("classifiers"))])
    return {
        "name": info["name"], "version": ver, "registry": "pypi", "language": "python",
        "license": lic, "url": canonical_file_url(name, u["url"]), "sha256": u["digests"]["sha256"], "size": u["size"],
    }


def main():
    jobs = [(resolve_npm, s) for s in NPM.split()] + [(resolve_pypi, s) for s in PYPI.split()]
    out, seen = [], set()
    with ThreadPoolExecutor(8) as ex:
        futs = [(s, ex.submit(f, s)) for f, s in jobs]
        for spec, fut in futs:
            try:
                p = fut.result()
            except Exception as e:  # noqa: BLE001 - report and continue
                print(f"skip {spec}: {e}", file=sys.stderr)
                continue
            if not licenses.is_permissive(p["license"]):
                print(f"skip {spec}: license {p['license']!r} is not permissive", file=sys.stderr)
                continue
            key = (p["registry"], p["name"].lower())
            if key not in seen:
                seen.add(key)
                out.append(p)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "manifest.json")
    atomic_write_text(path, json.dumps({"format_version": 1, "npm_registry": NPM_REGISTRY, "pypi_index": PYPI_INDEX,
                                        "packages": out}, indent=1) + "\n")
    print(f"wrote {path}: {len(out)} packages")


if __name__ == "__main__":
    main()
