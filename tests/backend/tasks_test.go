package backend

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// Task templates and literals as protojson, the way a registered Flyte task carries them.

// vars is a core.VariableMap of name -> simple type ("STRING", "INTEGER", ...), or a
// full LiteralType JSON when the type starts with "{".
func vars(pairs ...string) string {
	var entries []string
	for i := 0; i < len(pairs); i += 2 {
		typ := pairs[i+1]
		if !strings.HasPrefix(typ, "{") {
			typ = fmt.Sprintf(`{"simple": %q}`, typ)
		}
		entries = append(entries, fmt.Sprintf(`{"key": %q, "value": {"type": %s}}`, pairs[i], typ))
	}
	return `{"variables": [` + strings.Join(entries, ", ") + `]}`
}

// template is a core.TaskTemplate of taskType with the interface and custom given.
func template(taskType, inputs, outputs string, custom map[string]any) string {
	raw, err := json.Marshal(custom)
	if err != nil {
		panic(err)
	}
	iface := "{}"
	switch {
	case inputs != "" && outputs != "":
		iface = fmt.Sprintf(`{"inputs": %s, "outputs": %s}`, inputs, outputs)
	case inputs != "":
		iface = fmt.Sprintf(`{"inputs": %s}`, inputs)
	case outputs != "":
		iface = fmt.Sprintf(`{"outputs": %s}`, outputs)
	}
	return fmt.Sprintf(`{
		"id": {"resource_type": "TASK", "project": "flytesnacks", "domain": "development",
			"name": "backend.suite.%s", "version": "1"},
		"type": %q, "metadata": {"runtime": {"type": "OTHER", "flavor": "backend-suite"}},
		"interface": %s, "custom": %s}`, taskType, taskType, iface, raw)
}

// literals is a core.LiteralMap of Go strings, ints, floats and bools.
func literals(values map[string]any) string {
	var entries []string
	for name, value := range values {
		var primitive string
		switch v := value.(type) {
		case string:
			primitive = fmt.Sprintf(`{"string_value": %q}`, v)
		case int:
			primitive = fmt.Sprintf(`{"integer": "%d"}`, v)
		case float64:
			primitive = fmt.Sprintf(`{"float_value": %v}`, v)
		case bool:
			primitive = fmt.Sprintf(`{"boolean": %v}`, v)
		default:
			panic(fmt.Sprintf("no literal for %T", value))
		}
		entries = append(entries, fmt.Sprintf(`%q: {"scalar": {"primitive": %s}}`, name, primitive))
	}
	return `{"literals": {` + strings.Join(entries, ", ") + `}}`
}

// shellTask runs script as a shell task, writing the declared file outputs.
func shellTask(t *testing.T, script string, inputs map[string]any, inputVars, outputVars string,
	files map[string]string) Task {
	custom := map[string]any{"script": script, "kill_grace_seconds": 1}
	if files != nil {
		custom["outputs"] = files
	}
	task := Task{Template: template("shell", inputVars, outputVars, custom),
		OutputPrefix: t.TempDir(), Name: strings.ToLower(t.Name())}
	if inputs != nil {
		task.Inputs = literals(inputs)
	}
	return task
}
