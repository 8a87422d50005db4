/**
 * The `grpc-ts` template: TypeScript run by the host as its own Deno
 * process, speaking gRPC through the GoatKit SDK (`@goatkit/deno/sdk`).
 *
 * @module
 */

import {
  manifestJson,
  type PluginTemplate,
  readme,
  source,
} from "./template.ts";

const MAIN_TS = source`/**
 * {{name}}: a GoatKit plugin in TypeScript. The host runs it as its own Deno
 * process (in a sandbox, with only the permissions the operator granted) and
 * talks to it over gRPC; the SDK does the protocol. See README.md.
 *
 * manifest.json is the plugin's only manifest: the host reads it when the
 * package is installed, and \`register\` returns the same file.
 *
 * @module
 */

import { type GKRegistration, servePlugin } from "@goatkit/deno/sdk";
import manifest from "./manifest.json" with { type: "json" };

await servePlugin({
  // The host checks the manifest; the cast only narrows JSON's string types.
  register: () => manifest as GKRegistration,
  async call(fn, _args, ctx) {
    // _args is JSON: the route's path and query parameters.
    switch (fn) {
      case "hello":
        await ctx.host.log("info", "hello called");
        return {
          plugin: manifest.name,
          message: "Hello from " + manifest.name + "!",
          language: "typescript",
        };
      default:
        throw new Error("unknown function: " + fn);
    }
  },
});
`;

const DENO_JSON = `{
  "imports": {
    "@goatkit/deno/sdk": "{{sdk}}",
    "@grpc/grpc-js": "npm:@grpc/grpc-js@1.14.7",
    "@grpc/proto-loader": "npm:@grpc/proto-loader@0.8.1"
  },
  "tasks": {
    "check": "deno check main.ts"
  }
}
`;

const DENO_LOCK = `{
  "version": "5",
  "specifiers": {
    "npm:@grpc/grpc-js@1.14.7": "1.14.7",
    "npm:@grpc/proto-loader@0.8.1": "0.8.1",
    "npm:croner@11.0.1": "11.0.1",
    "npm:zod@4.6.7": "4.6.7"
  },
  "npm": {
    "@grpc/grpc-js@1.14.7": {
      "integrity": "sha512-W4W/fcBMGRVtG6dW2c7cw2mnpS3hvbBd+oQXjh2iYFTZDk1JJmcNqkM5KSaPubQpamlUUurrlb7G1s9NJeERmQ==",
      "dependencies": [
        "@grpc/proto-loader",
        "@js-sdsl/ordered-map"
      ]
    },
    "@grpc/proto-loader@0.8.1": {
      "integrity": "sha512-wtF6h+DY6M3YaDBPAmvuuA6jV8Sif9MjtOI5euKFWRgCDl5PeDpPsHR9u2l6St5ceY8AZgoNDww5+HvEsXFsGg==",
      "dependencies": [
        "lodash.camelcase",
        "long",
        "protobufjs",
        "yargs"
      ],
      "bin": true
    },
    "@js-sdsl/ordered-map@4.4.2": {
      "integrity": "sha512-iUKgm52T8HOE/makSxjqoWhe95ZJA1/G1sYsGev2JDKUSS14KAgg1LHb+Ba+IPow0xflbnSkOsZcO08C7w1gYw=="
    },
    "@protobufjs/aspromise@1.1.2": {
      "integrity": "sha512-j+gKExEuLmKwvz3OgROXtrJ2UG2x8Ch2YZUxahh+s1F2HZ+wAceUNLkvy6zKCPVRkU++ZWQrdxsUeQXmcg4uoQ=="
    },
    "@protobufjs/base64@1.1.2": {
      "integrity": "sha512-AZkcAA5vnN/v4PDqKyMR5lx7hZttPDgClv83E//FMNhR2TMcLUhfRUBHCmSl0oi9zMgDDqRUJkSxO3wm85+XLg=="
    },
    "@protobufjs/codegen@2.0.5": {
      "integrity": "sha512-zgXFLzW3Ap33e6d0Wlj4MGIm6Ce8O89n/apUaGNB/jx+hw+ruWEp7EwGUshdLKVRCxZW12fp9r40E1mQrf/34g=="
    },
    "@protobufjs/eventemitter@1.1.1": {
      "integrity": "sha512-vW1GmwMZNnL+gMRaovlh9yZX74kc+TTU3FObkkurpMaRtBfLP3ldjS9KQWlwZgraRE0+dheEEoAxdzcJQ8eXZg=="
    },
    "@protobufjs/fetch@1.1.1": {
      "integrity": "sha512-GpptLrs57adMSuHi3VNj0mAF8dwh36LMaYF6XyJ6JMWlVsc+t42tm1HSEDmOs3A8fC9yyeisgLhsTVQokOZ0zw==",
      "dependencies": [
        "@protobufjs/aspromise"
      ]
    },
    "@protobufjs/float@1.0.2": {
      "integrity": "sha512-Ddb+kVXlXst9d+R9PfTIxh1EdNkgoRe5tOX6t01f1lYWOvJnSPDBlG241QLzcyPdoNTsblLUdujGSE4RzrTZGQ=="
    },
    "@protobufjs/path@1.1.2": {
      "integrity": "sha512-6JOcJ5Tm08dOHAbdR3GrvP+yUUfkjG5ePsHYczMFLq3ZmMkAD98cDgcT2iA1lJ9NVwFd4tH/iSSoe44YWkltEA=="
    },
    "@protobufjs/pool@1.1.0": {
      "integrity": "sha512-0kELaGSIDBKvcgS4zkjz1PeddatrjYcmMWOlAuAPwAeccUrPHdUqo/J6LiymHHEiJT5NrF1UVwxY14f+fy4WQw=="
    },
    "@protobufjs/utf8@1.1.2": {
      "integrity": "sha512-b1UQwcEZ4yCnMCD8DAL1VlbvBJE9/IX4FTIp7BG1xYpf29SLazLSrqUkj4w7Y5y7cCVP6E5tcqqcI0xemPkHug=="
    },
    "@types/node@26.6.11": {
      "integrity": "sha512-uUyQ2XLEz+EXh34lmS3GhKrkqn/8FU7KUiKRpk347At2bmnMVWss45yz8b4FG/tUtmV1tV/+TVkITItPROyeeQ==",
      "dependencies": [
        "undici-types"
      ]
    },
    "ansi-regex@5.0.1": {
      "integrity": "sha512-quJQXlTSUGL2LH9SUXo8VwsY4soanhgo6LNSm84E1LBcE8s3O0wpdiRzyR9z/ZZJMlMWv37qOOb9pdJlMUEKFQ=="
    },
    "ansi-styles@4.3.0": {
      "integrity": "sha512-zbB9rCJAT1rbjiVDb2hqKFHNYLxgtk8NURxZ3IZwD3F6NtxbXZQCnnSi1Lkx+IDohdPlFp222wVALIheZJQSEg==",
      "dependencies": [
        "color-convert"
      ]
    },
    "cliui@8.0.1": {
      "integrity": "sha512-BSeNnyus75C4//NQ9gQt1/csTXyo/8Sb+afLAkzAptFuMsod9HFokGNudZpi/oQV73hnVK+sR+5PVRMd+Dr7YQ==",
      "dependencies": [
        "string-width",
        "strip-ansi",
        "wrap-ansi"
      ]
    },
    "color-convert@2.0.1": {
      "integrity": "sha512-RRECPsj7iu/xb5oKYcsFHSppFNnsj/52OVTRKb4zP5onXwVF3zVmmToNcOfGC+CRDpfK/U584fMg38ZHCaElKQ==",
      "dependencies": [
        "color-name"
      ]
    },
    "color-name@1.1.4": {
      "integrity": "sha512-dOy+3AuW3a2wNbZHIuMZpTcgjGuLU/uBL/ubcZF9OXbDo8ff4O8yVp5Bf0efS8uEoYo5q4Fx7dY9OgQGXgAsQA=="
    },
    "croner@11.0.1": {
      "integrity": "sha512-/fmHcoczPy5cMcmJ6ex7J7LAwb545V1dNmRrdDGP3hwStg/06IYP56YgBySCSdWGDz2PJYQyDukaR8b8R5o2HA=="
    },
    "emoji-regex@8.0.0": {
      "integrity": "sha512-MSjYzcWNOA0ewAHpz0MxpYFvwg6yjy1NG3xteoqz644VCo/RPgnr1/GGt+ic3iJTzQ8Eu3TdM14SawnVUmGE6A=="
    },
    "escalade@3.2.0": {
      "integrity": "sha512-WUj2qlxaQtO4g6Pq5c29GTcWGDyd8itL8zTlipgECz3JesAiiOKotd8JU6otB3PACgG6xkJUyVhboMS+bje/jA=="
    },
    "get-caller-file@2.0.5": {
      "integrity": "sha512-DyFP3BM/3YHTQOCUL/w0OZHR0lpKeGrxotcHWcqNEdnltqFwXVfhEBQ94eIo34AfQpo0rGki4cyIiftY06h2Fg=="
    },
    "is-fullwidth-code-point@3.0.0": {
      "integrity": "sha512-zymm5+u+sCsSWyD9qNaejV3DFvhCKclKdizYaJUuHA83RLjb7nSuGnddCHGv0hk+KY7BMAlsWeK4Ueg6EV6XQg=="
    },
    "lodash.camelcase@4.3.0": {
      "integrity": "sha512-TwuEnCnxbc3rAvhf/LbG7tJUDzhqXyFnv3dtzLOPgCG/hODL7WFnsbwktkD7yUV0RrreP/l1PALq/YSg6VvjlA=="
    },
    "long@5.3.2": {
      "integrity": "sha512-mNAgZ1GmyNhD7AuqnTG3/VQ26o760+ZYBPKjPvugO8+nLbYfX6TVpJPseBvopbdY+qpZ/lKUnmEc1LeZYS3QAA=="
    },
    "protobufjs@7.6.6": {
      "integrity": "sha512-dYDWdjSl5RNb7SgPxGQcRU+GtvP7s2fpkrY0r432PcOIaZ0/rBcxEZnQN67iJhFuQiVw754JDoPruPCNdGsbjg==",
      "dependencies": [
        "@protobufjs/aspromise",
        "@protobufjs/base64",
        "@protobufjs/codegen",
        "@protobufjs/eventemitter",
        "@protobufjs/fetch",
        "@protobufjs/float",
        "@protobufjs/path",
        "@protobufjs/pool",
        "@protobufjs/utf8",
        "@types/node",
        "long"
      ],
      "scripts": true
    },
    "require-directory@2.1.1": {
      "integrity": "sha512-fGxEI7+wsG9xrvdjsrlmL22OMTTiHRwAMroiEeMgq8gzoLC/PQr7RsRDSTLUg/bZAZtF+TVIkHc6/4RIKrui+Q=="
    },
    "string-width@4.2.3": {
      "integrity": "sha512-wKyQRQpjJ0sIp62ErSZdGsjMJWsap5oRNihHhu6G7JVO/9jIB6UyevL+tXuOqrng8j/cxKTWyWUwvSTriiZz/g==",
      "dependencies": [
        "emoji-regex",
        "is-fullwidth-code-point",
        "strip-ansi"
      ]
    },
    "strip-ansi@6.0.1": {
      "integrity": "sha512-Y38VPSHcqkFrCpFnQ9vuSXmquuv5oXOKpGeT6aGrr3o3Gc9AlVa6JBfUSOCnbxGGZF+/0ooI7KrPuUSztUdU5A==",
      "dependencies": [
        "ansi-regex"
      ]
    },
    "undici-types@8.9.0": {
      "integrity": "sha512-KTDyRTYX8sWmKXAikPHHSyc63CRPETMctyjKFupcC6OBLXT3xsN0e9aF7m+mIXutFWpUXuedtowG7iLOzp0kQg=="
    },
    "wrap-ansi@7.0.0": {
      "integrity": "sha512-YVGIj2kamLSTxw6NsZjoBxfSwsn0ycdesmc4p+Q21c5zPuZ1pl+NfxVdxPtdHvmNVOQ6XSYG4AUtyt/Fi7D16Q==",
      "dependencies": [
        "ansi-styles",
        "string-width",
        "strip-ansi"
      ]
    },
    "y18n@5.0.8": {
      "integrity": "sha512-0pfFzegeDWJHJIAmTLRP2DwHjdF5s7jo9tuztdQxAhINCdvS+3nGINqPd00AphqJR/0LhANUS6/+7SCb98YOfA=="
    },
    "yargs-parser@21.1.1": {
      "integrity": "sha512-tVpsJW7DdjecAiFpbIB1e3qxIQsE6NoPc5/eTdrbbIC4h0LVsWhnoa3g+m2HclBIujHzsxZ4VJVA+GUuc2/LBw=="
    },
    "yargs@17.7.3": {
      "integrity": "sha512-GZtjxm/J/4TSxuL3FNYjCmLktBTnIw/rVmKSIyKeYAZpmJB2ig9VauCC5xsa82GNKVKDAqpOn3KVzNt0zmrU0g==",
      "dependencies": [
        "cliui",
        "escalade",
        "get-caller-file",
        "require-directory",
        "string-width",
        "y18n",
        "yargs-parser"
      ]
    },
    "zod@4.6.7": {
      "integrity": "sha512-g8W2D2kU6a8untc053fX1uVBKzM7yqAxW/3zwk83+6RyF2+SKOuV+c0wBDhUwzV1PaGapmZH+rmcUzPf+3CGwg=="
    }
  },
  "workspace": {
    "dependencies": [
      "npm:@grpc/grpc-js@1.14.7",
      "npm:@grpc/proto-loader@0.8.1"
    ],
    "links": {
      "jsr:@goatkit/deno@0.1.0": {
        "dependencies": [
          "npm:@electric-sql/pglite@0.5.17",
          "npm:@grpc/grpc-js@1.14.7",
          "npm:@grpc/proto-loader@0.8.1",
          "npm:croner@11.0.1",
          "npm:fflate@0.8.3",
          "npm:hono@4.13.19",
          "npm:ioredis@6.0.0",
          "npm:mailparser@3.14.2",
          "npm:nodemailer@10.6.1",
          "npm:pg@8.23.1",
          "npm:playwright-core@1.65.1",
          "npm:sanitize-html@2.18.1",
          "npm:smtp-server@3.21.6",
          "npm:wabt@1.0.39",
          "npm:zod@4.6.7"
        ]
      }
    }
  }
}
`;

const BUILD_SH = source`#!/bin/sh
# A TypeScript plugin runs from source: "building" type-checks it against the
# GoatKit SDK that deno.json maps @goatkit/deno/sdk to.
# Usage: ./build.sh
set -eu
cd "$(dirname "$0")"
deno check --quiet main.ts
echo "checked main.ts"
`;

/** The `grpc-ts` template. */
export const GRPC_TS: PluginTemplate = {
  runtime: "grpc-ts",
  language: "TypeScript",
  summary: "TypeScript, its own Deno process over gRPC (@goatkit/deno/sdk)",
  executables: ["build.sh"],
  files: {
    "manifest.json": manifestJson("TypeScript"),
    "main.ts": MAIN_TS,
    "deno.json": DENO_JSON,
    "deno.lock": DENO_LOCK,
    "build.sh": BUILD_SH,
    ".gitignore": "*.zip\n",
    "README.md": readme({
      language: "TypeScript (gRPC, run by Deno)",
      files: [
        "- `main.ts`: the code (`servePlugin` from the SDK).",
        "- `manifest.json`: name, routes, permissions; `register()` returns it.",
        "- `deno.json`, `deno.lock`: map `@goatkit/deno/sdk` (for your editor and `deno check`; the host maps it to its own SDK when it runs the plugin) and pin the SDK's npm packages.",
        "- `build.sh`: `deno check main.ts` (nothing to compile).",
      ].join("\n"),
      build: "./build.sh                     # type-check; or: gk build .",
      notes:
        "The host starts `main.ts` with `deno run`, giving it only what its granted permissions map to: no network but the host's, no environment, its own data folder.",
    }),
  },
};
