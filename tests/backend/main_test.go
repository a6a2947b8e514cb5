package backend

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The suite's settings, from TestMain.
var (
	connectorBin string   // FLYTE_CONNECTOR_BIN: the daemon under test
	schema       *Schema  // flyteidl2 as installed beside it: Flyte 2's plugin speaks it
	schemaV1     *Schema  // flyteidl as installed beside it: Flyte 1 propeller's plugin
	fixtureEnv   []string // PYTHONPATH for the fixture connectors
	tlsFiles     struct{ ca, cert, key string }
	scratch      string // removed when the suite ends

	sharedOnce   sync.Once
	sharedDaemon *Daemon
	sharedErr    error
)

const (
	poll   = 100 * time.Millisecond // the backend polls every 30 s; the suite does not wait that long
	within = 60 * time.Second
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	connectorBin = os.Getenv("FLYTE_CONNECTOR_BIN")
	if connectorBin == "" {
		fmt.Fprintln(os.Stderr, "FLYTE_CONNECTOR_BIN is not set: point it at the flyte-connector "+
			"to test (make test passes .venv/bin/flyte-connector)")
		return 2
	}
	here, _ := os.Getwd()
	repo := filepath.Dir(filepath.Dir(here))
	var err error
	python := filepath.Join(filepath.Dir(connectorBin), "python")
	script := filepath.Join(here, "dump_descriptors.py")
	if schema, err = LoadSchema(python, script, Flyte2); err == nil {
		schemaV1, err = LoadSchema(python, script, Flyte1)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fixtureEnv = []string{"PYTHONPATH=" + filepath.Join(repo, "tests", "fixtures", "connectors") +
		string(os.PathListSeparator) + repo}
	scratch, err = os.MkdirTemp("", "backend-suite-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(scratch)
	// Go reads SSL_CERT_FILE once, on the first use of the system pool: set before any test.
	if tlsFiles.ca, tlsFiles.cert, tlsFiles.key, err = TestCA(scratch); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Setenv("SSL_CERT_FILE", tlsFiles.ca)
	defer func() {
		if sharedDaemon != nil {
			sharedDaemon.Stop()
		}
	}()
	return m.Run()
}

// startDaemon starts a daemon for one test on port (0: a free one), stopped when the test ends.
func startDaemon(t *testing.T, port int, stateDir string, args ...string) *Daemon {
	t.Helper()
	return startDaemonEnv(t, port, nil, append([]string{"--state-dir", stateDir}, args...)...)
}

// startDaemonEnv is startDaemon with env added to the daemon's environment.
func startDaemonEnv(t *testing.T, port int, env []string, args ...string) *Daemon {
	t.Helper()
	if port == 0 {
		var err error
		if port, err = FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	env = append(append([]string{"FLYTE_CONNECTOR_SHELL_STATE_DIR=" + t.TempDir()}, fixtureEnv...), env...)
	d, err := StartDaemon(connectorBin, port, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.Log())
		}
	})
	return d
}

// shared is one daemon with the shell and SQL plugins and the fixture connectors, for
// the scenarios that need nothing else, serving both generations' APIs; TestMain stops it.
func shared(t *testing.T) *Daemon {
	t.Helper()
	sharedOnce.Do(func() {
		port, err := FreePort()
		if err != nil {
			sharedErr = err
			return
		}
		state, err := os.MkdirTemp(scratch, "shared-state-")
		if err != nil {
			sharedErr = err
			return
		}
		env := append([]string{"FLYTE_CONNECTOR_SHELL_STATE_DIR=" + state}, fixtureEnv...)
		connections, err := counterConnections(state)
		if err != nil {
			sharedErr = err
			return
		}
		sharedDaemon, sharedErr = StartDaemon(connectorBin, port, env, "--state-dir", state,
			"--plugins", "flyte-connector-shell,flyte-connector-sql",
			"-m", "flyte_style", "-m", "backend_connectors", "--connections", connections)
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedDaemon
}

// counterConnections writes the connections file that gives the Flyte SDK counter of
// flyte_style.py its api_key and region when a request carries no connection (Flyte 1).
func counterConnections(dir string) (string, error) {
	key, path := filepath.Join(dir, "counter-key"), filepath.Join(dir, "connections.yaml")
	err := os.WriteFile(key, []byte("s3cr3t-counter-key\n"), 0o600)
	if err == nil {
		err = os.WriteFile(path, []byte("connections:\n  - task_type: flyte_counter\n"+
			"    secrets: {api_key: {file: "+key+"}}\n    configs: {region: eu}\n"), 0o600)
	}
	return path, err
}

// eachBackend runs test as a subtest per backend generation: Flyte 2's connector plugin
// (schema) and Flyte 1 propeller's (schemaV1).
func eachBackend(t *testing.T, test func(t *testing.T, s *Schema)) {
	for _, s := range []*Schema{schema, schemaV1} {
		t.Run(s.Name, func(t *testing.T) { test(t, s) })
	}
}

// plugin is the connector plugin of the schema's generation with its deployment pointed
// at the daemon, its connector registry read once; closed when the test ends.
func plugin(t *testing.T, s *Schema, dep Deployment) *Plugin {
	t.Helper()
	client, err := Dial(s, dep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	p := NewPlugin(client)
	if err := p.WatchConnectors(context.Background()); err != nil {
		t.Fatalf("ListConnectors: %v", err)
	}
	return p
}

// expect fails the test unless the outcome has the phase and, when given, code and a
// message containing each of `contains`.
func expect(t *testing.T, out Outcome, phase, code string, contains ...string) {
	t.Helper()
	t.Logf("backend concluded: %s", out)
	if out.Err != nil || out.Phase != phase || (code != "" && out.Code != code) {
		t.Fatalf("backend concluded %s; want %s [%s]", out, phase, code)
	}
	for _, part := range contains {
		if !strings.Contains(out.Message, part) {
			t.Fatalf("backend's message %q lacks %q", out.Message, part)
		}
	}
}

// scalar is the primitive value of an output literal (JSON values: numbers as the
// protojson form gives them, int64 as strings).
func scalar(t *testing.T, outputs map[string]any, name string) any {
	t.Helper()
	literal, ok := outputs[name].(map[string]any)
	if !ok {
		t.Fatalf("no output %q in %v", name, outputs)
	}
	s, _ := literal["scalar"].(map[string]any)
	if primitive, ok := s["primitive"].(map[string]any); ok {
		for _, v := range primitive {
			return v
		}
	}
	if blob, ok := s["blob"].(map[string]any); ok {
		return blob["uri"]
	}
	if sd, ok := s["structured_dataset"].(map[string]any); ok {
		return sd["uri"]
	}
	t.Fatalf("output %q is not a primitive, blob or dataset: %v", name, literal)
	return nil
}

// readURI reads a local file output (a path or a file:// URI).
func readURI(t *testing.T, uri any) string {
	t.Helper()
	raw, err := os.ReadFile(strings.TrimPrefix(fmt.Sprint(uri), "file://"))
	if err != nil {
		t.Fatalf("output file: %v", err)
	}
	return string(raw)
}
