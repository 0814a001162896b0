package main_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// composeServices are the services docker-compose.yml must define.
var composeServices = []string{
	"kafka", "schema-registry", "topics", "main", "retry-1", "retry-2", "retry-3", "aggregator", "producer", "kafka-ui",
}

// scalableServices must run with `docker compose up --scale NAME=N`: no fixed
// container name and no published host port.
var scalableServices = []string{"main", "retry-1", "retry-2", "retry-3", "aggregator", "producer"}

// TestComposeFileIsValid checks docker-compose.yml at the repository root with
// Debian's docker-compose (1.29): it must validate, define every service of the
// pipeline, and leave the stages free to scale.
func TestComposeFileIsValid(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatal("docker-compose not found: install Debian's docker-compose (apt-get install -y docker-compose); make test does this")
	}
	// go test runs in the package directory, cmd/orders.
	file, err := filepath.Abs(filepath.Join("..", "..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("compose file: %v", err)
	}

	compose := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"-f", file}, args...)...)
		// Only this file counts: no project name or file list from the caller's shell.
		cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
			return strings.HasPrefix(kv, "COMPOSE_")
		})
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("docker-compose -f %s %s: %v\n%s", file, strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	compose("config", "-q")

	var got []string
	for _, l := range strings.Split(compose("config", "--services"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			got = append(got, l)
		}
	}
	for _, want := range composeServices {
		if !slices.Contains(got, want) {
			t.Errorf("service %q missing; docker-compose config --services lists %v", want, got)
		}
	}

	normalized := compose("config")
	keys := serviceKeys(normalized)
	for _, name := range scalableServices {
		k, ok := keys[name]
		if !ok {
			t.Errorf("service %q not found in docker-compose config output", name)
			continue
		}
		for _, bad := range []string{"container_name", "ports"} {
			if slices.Contains(k, bad) {
				t.Errorf("service %q sets %s: `docker compose up --scale %s=N` would fail", name, bad, name)
			}
		}
		for _, need := range []string{"build", "image", "command", "depends_on", "restart", "stop_grace_period"} {
			if !slices.Contains(k, need) {
				t.Errorf("service %q has no %s", name, need)
			}
		}
	}
	if t.Failed() {
		t.Logf("docker-compose config:\n%s", normalized)
	}
}

// serviceKeys reads the normalized YAML that `docker-compose config` prints
// (two-space indentation, services sorted) and returns, per service, the keys
// set directly under it.
func serviceKeys(yaml string) map[string][]string {
	keys := map[string][]string{}
	inServices, current := false, ""
	sc := bufio.NewScanner(strings.NewReader(yaml))
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		indent := len(line) - len(trimmed)
		key, _, isKey := strings.Cut(trimmed, ":")
		switch {
		case indent == 0:
			inServices, current = trimmed == "services:", ""
		case !inServices || !isKey:
		case indent == 2:
			current = strings.Trim(key, `'"`)
			keys[current] = []string{}
		case indent == 4 && current != "" && !strings.HasPrefix(trimmed, "- "):
			keys[current] = append(keys[current], key)
		}
	}
	return keys
}
