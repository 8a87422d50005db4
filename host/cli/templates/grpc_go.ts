/**
 * The `grpc-go` template: Go with HashiCorp go-plugin, a native executable
 * the host runs over gRPC (the operator must trust it by its SHA-256:
 * `GOATKIT_TRUSTED_EXECUTABLES`). Built in GOPATH mode from Debian's Go
 * packages, with no module download.
 *
 * @module
 */

import {
  manifestJson,
  type PluginTemplate,
  readme,
  source,
} from "./template.ts";

/**
 * GoatKit's gRPC protocol, `runtimes/grpc/plugin.proto` (a test checks the
 * two are equal).
 */
export const PLUGIN_PROTO: string =
  source`// GoatKit gRPC plugin protocol, package goatkit.plugin.v1.
//
// Field numbers 1-21 follow GoatFlow's (unused) plugin.proto; numbers >= 10 in
// the call and host messages, and >= 22 in GKRegistration, are GoatKit-for-Deno
// additions. Served by the plugin: GKPlugin (plus go-plugin's
// grpc.health.v1.Health and plugin.GRPCController). Served by the host on its
// own unix socket per plugin (address in InitRequest.config["host_socket"]):
// GKHost.
//
// Errors from GKHost travel as gRPC status codes (PERMISSION_DENIED,
// NOT_FOUND, DEADLINE_EXCEEDED, INVALID_ARGUMENT, UNAVAILABLE, INTERNAL); the
// \`error\` fields are kept for GoatFlow compatibility, left empty by this host,
// and treated as a failure when a peer sets them. Plugin function errors travel
// in CallResponse.error.
//
// Go plugins dialing host_socket with grpc-go must set a valid :authority
// (grpc.WithAuthority("localhost")): the socket path is not one, and the
// host's HTTP/2 server closes such connections.
//
// A plugin calling GKHost while serving a Call sends that call's
// CallRequest.call_id as gRPC metadata \`gk-call-id\`; while serving Init, the
// id in InitRequest.config["call_id"]. The host binds the callback to its own
// record of that call (deadline, language, call chain — never values the
// plugin sends) and refuses a call id it did not issue to this plugin or
// whose call has ended (PERMISSION_DENIED) or passed its deadline
// (DEADLINE_EXCEEDED). Without \`gk-call-id\` only Log is accepted; any other
// method is refused (FAILED_PRECONDITION).
syntax = "proto3";

package goatkit.plugin.v1;

message Empty {}

message GKRegistration {
  string name = 1;
  string version = 2;
  string description = 3;
  string author = 4;
  string license = 5;
  string homepage = 6;
  repeated RouteSpec routes = 10;
  repeated MenuItemSpec menu_items = 11;
  repeated WidgetSpec widgets = 12;
  repeated JobSpec jobs = 13;
  repeated TemplateSpec templates = 14;
  string min_host_version = 20;
  repeated string permissions = 21;
  I18nSpec i18n = 22;
  repeated ErrorCodeSpec error_codes = 23;
  // The whole manifest as JSON. When set, the host uses it instead of the
  // typed fields above (handy for plugins that keep a manifest.json).
  bytes manifest_json = 30;
}

message RouteSpec {
  string method = 1;
  string path = 2;
  string handler = 3;
  repeated string middleware = 4;
  string description = 5;
}

message MenuItemSpec {
  string id = 1;
  string label = 2;
  string icon = 3;
  string path = 4;
  string location = 5;
  string parent = 6;
  optional int32 order = 7;
  repeated MenuItemSpec children = 8;
}

message WidgetSpec {
  string id = 1;
  string title = 2;
  string description = 3;
  string handler = 4;
  string location = 5;
  string size = 6;
  optional int32 order = 7;
  optional bool refreshable = 8;
  optional int32 refresh_sec = 9;
}

message JobSpec {
  string id = 1;
  string handler = 2;
  string schedule = 3;
  string description = 4;
  optional bool enabled = 5;
  string timeout = 6;
}

message TemplateSpec {
  string name = 1;
  string path = 2;
  optional bool override = 3;
}

message Translations {
  map<string, string> entries = 1;
}

message I18nSpec {
  string namespace = 1;
  repeated string languages = 2;
  map<string, Translations> translations = 3;
}

message ErrorCodeSpec {
  string code = 1;
  string message = 2;
  int32 http_status = 3;
}

message InitRequest {
  // host_socket: the GKHost unix socket path; host_version; plugin_name;
  // data_dir: the plugin's data directory; call_id and deadline_unix_ms:
  // Init's own call id (for callbacks made during Init) and deadline.
  map<string, string> config = 1;
}

message CallRequest {
  string function = 1;
  bytes args_json = 2;
  // GoatKit additions: the context of the call.
  string call_id = 10;
  string caller = 11;
  string language = 12;
  int64 deadline_unix_ms = 13;
  repeated string chain = 14;
}

message CallResponse {
  bytes result_json = 1;
  string error = 2;
}

service GKPlugin {
  rpc GKRegister(Empty) returns (GKRegistration);
  rpc Init(InitRequest) returns (Empty);
  rpc Call(CallRequest) returns (CallResponse);
  rpc Shutdown(Empty) returns (Empty);
}

message DBQueryRequest {
  string query = 1;
  // Each argument JSON-encoded.
  repeated bytes args = 2;
}

message DBQueryResponse {
  // Each row a JSON object.
  repeated bytes rows_json = 1;
  string error = 2;
}

message DBExecRequest {
  string query = 1;
  repeated bytes args = 2;
}

message DBExecResponse {
  int64 affected_rows = 1;
  string error = 2;
}

message CacheGetRequest {
  string key = 1;
}

message CacheGetResponse {
  bytes value = 1;
  bool found = 2;
  string error = 3;
}

message CacheSetRequest {
  string key = 1;
  bytes value = 2;
  int32 ttl_seconds = 3;
}

message CacheDeleteRequest {
  string key = 1;
}

message HTTPRequestMsg {
  string method = 1;
  string url = 2;
  map<string, string> headers = 3;
  bytes body = 4;
}

message HTTPResponseMsg {
  int32 status_code = 1;
  bytes body = 2;
  string error = 3;
  map<string, string> headers = 10;
}

message SendEmailRequest {
  string to = 1;
  string subject = 2;
  string body = 3;
  bool html = 4;
}

message LogRequest {
  // debug, info, warn or error (anything else is info).
  string level = 1;
  string message = 2;
  map<string, string> fields = 3;
  // Structured fields as a JSON object; wins over \`fields\` when set.
  bytes fields_json = 10;
}

message ConfigGetRequest {
  string key = 1;
}

message ConfigGetResponse {
  string value = 1;
  string error = 2;
}

message TranslateRequest {
  string key = 1;
  repeated string args = 2;
}

message TranslateResponse {
  string text = 1;
  string error = 10;
}

message CallPluginRequest {
  string plugin = 1;
  string function = 2;
  bytes args_json = 3;
}

message CallPluginResponse {
  bytes result_json = 1;
  string error = 2;
}

service GKHost {
  rpc DBQuery(DBQueryRequest) returns (DBQueryResponse);
  rpc DBExec(DBExecRequest) returns (DBExecResponse);
  rpc CacheGet(CacheGetRequest) returns (CacheGetResponse);
  rpc CacheSet(CacheSetRequest) returns (Empty);
  rpc CacheDelete(CacheDeleteRequest) returns (Empty);
  rpc HTTPRequest(HTTPRequestMsg) returns (HTTPResponseMsg);
  rpc SendEmail(SendEmailRequest) returns (Empty);
  rpc Log(LogRequest) returns (Empty);
  rpc ConfigGet(ConfigGetRequest) returns (ConfigGetResponse);
  rpc Translate(TranslateRequest) returns (TranslateResponse);
  rpc CallPlugin(CallPluginRequest) returns (CallPluginResponse);
}
`;

const MAIN_GO =
  source`// {{name}}: a GoatKit plugin in Go, a native executable served with
// HashiCorp go-plugin over gRPC. See README.md.
//
// The host starts it with GOATKIT_PLUGIN=goatkit-v1 in its environment and
// reads the go-plugin handshake line from its stdout; log lines go to stderr
// as hclog JSON, which the host files under the plugin's name.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"io"
	"io/ioutil"
	"os"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "goatkit.local/plugin/gkpb"
)

// manifest.json is the plugin's only manifest: the host reads it when the
// package is installed, and GKRegister returns the same file.
//
//go:embed manifest.json
var manifest []byte

var handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "GOATKIT_PLUGIN",
	MagicCookieValue: "goatkit-v1",
}

// Logs go to the original stderr (go-plugin swaps os.Stderr after Serve).
var logger = hclog.New(&hclog.LoggerOptions{
	Name:       "{{name}}",
	Output:     os.Stderr,
	JSONFormat: true,
	Level:      hclog.Info,
})

type server struct {
	pb.UnimplementedGKPluginServer
}

func (s *server) GKRegister(ctx context.Context, _ *pb.Empty) (*pb.GKRegistration, error) {
	var m struct{ Name, Version string }
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, err
	}
	return &pb.GKRegistration{Name: m.Name, Version: m.Version, ManifestJson: manifest}, nil
}

func (s *server) Init(ctx context.Context, req *pb.InitRequest) (*pb.Empty, error) {
	logger.Info("initialized", "host_version", req.Config["host_version"])
	return &pb.Empty{}, nil
}

func jsonResult(v interface{}) (*pb.CallResponse, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return &pb.CallResponse{Error: err.Error()}, nil
	}
	return &pb.CallResponse{ResultJson: b}, nil
}

// Call runs a plugin function; req.ArgsJson holds the route's path and query
// parameters as JSON. Errors travel in CallResponse.Error.
func (s *server) Call(ctx context.Context, req *pb.CallRequest) (*pb.CallResponse, error) {
	switch req.Function {
	case "hello":
		logger.Info("hello called")
		return jsonResult(map[string]string{
			"plugin":   "{{name}}",
			"message":  "Hello from {{name}}!",
			"language": "go",
		})
	}
	return &pb.CallResponse{Error: "unknown function: " + req.Function}, nil
}

func (s *server) Shutdown(ctx context.Context, _ *pb.Empty) (*pb.Empty, error) {
	logger.Info("shutting down")
	return &pb.Empty{}, nil
}

type gkPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl *server
}

func (p *gkPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterGKPluginServer(s, p.impl)
	return nil
}

func (p *gkPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return pb.NewGKPluginClient(c), nil
}

func main() {
	// The GoatKit host keeps stdin open as a pipe; when it closes, the host
	// is gone, and so is the plugin.
	if fi, err := os.Stdin.Stat(); err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
		go func() {
			_, _ = io.Copy(ioutil.Discard, os.Stdin)
			os.Exit(0)
		}()
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: handshake,
		Plugins:         plugin.PluginSet{"gkplugin": &gkPlugin{impl: &server{}}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
	})
}
`;

const BUILD_SH = source`#!/bin/sh
# Builds the executable "plugin" from main.go and plugin.proto with Go in
# GOPATH mode and Debian's packages (no module download):
#   apt install golang-go golang-github-hashicorp-go-plugin-dev \
#     golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev \
#     protobuf-compiler protoc-gen-go protoc-gen-go-grpc
# GOPATH_EXTRA (default /usr/share/gocode) is where those packages are.
# Usage: ./build.sh [output]   (default: plugin beside this script)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$\{1:-$here/plugin}"
case "$out" in /*) ;; *) out="$(pwd)/$out" ;; esac
work=$(mktemp -d "$\{TMPDIR:-/tmp}/{{name}}-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
src="$work/src/goatkit.local/plugin"
mkdir -p "$src/gkpb" "$(dirname "$out")"
cp "$here/main.go" "$here/manifest.json" "$src/"
m=Mplugin.proto=goatkit.local/plugin/gkpb
protoc -I "$here" \
  --go_out="$src/gkpb" --go_opt=paths=source_relative --go_opt=$m \
  --go-grpc_out="$src/gkpb" --go-grpc_opt=paths=source_relative \
  --go-grpc_opt=$m "$here/plugin.proto"
cd "$src"
export GO111MODULE=off GOFLAGS= CGO_ENABLED=0
export GOPATH="$work:$\{GOPATH_EXTRA:-/usr/share/gocode}"
export GOCACHE="$\{GOCACHE:-$\{XDG_CACHE_HOME:-$\{HOME:-/tmp}/.cache}/goatkit/go-build}"
go build -trimpath -ldflags=-s -o "$out.tmp" .
mv "$out.tmp" "$out"
echo "built $out"
`;

/** The `grpc-go` template. */
export const GRPC_GO: PluginTemplate = {
  runtime: "grpc-go",
  language: "Go (go-plugin)",
  summary: "Go, a native executable over gRPC (HashiCorp go-plugin)",
  executables: ["build.sh"],
  files: {
    "manifest.json": manifestJson("Go (go-plugin)"),
    "main.go": MAIN_GO,
    "plugin.proto": PLUGIN_PROTO,
    "build.sh": BUILD_SH,
    ".gitignore": "/plugin\n*.zip\n",
    "README.md": readme({
      language: "Go (a native executable, HashiCorp go-plugin over gRPC)",
      files: [
        "- `main.go`: the code (`GKRegister`, `Init`, `Call`, `Shutdown`).",
        "- `manifest.json`: name, routes, permissions; `GKRegister` returns it (`//go:embed`).",
        "- `plugin.proto`: GoatKit's gRPC protocol, compiled by `protoc` at build time.",
        "- `build.sh`: protoc + `go build` (GOPATH mode) → the executable `plugin`.",
      ].join("\n"),
      build: "./build.sh                     # or: gk build .",
      notes:
        "A native executable runs only when the operator trusts it: add the SHA-256 of the built `plugin` (`sha256sum plugin`) to the host's `GOATKIT_TRUSTED_EXECUTABLES` (or `server.trustedExecutables` in `goatkit.json`) before installing it. It runs in the host's sandbox like every gRPC plugin.",
    }),
  },
};
