package backend

// What each part reproduces, in flyteorg/flyte's flyteplugins/go/tasks (read at the
// commit of August 2026 whose flyteidl2 connector protos match flyteidl2 2.0.53; check
// these when the backend moves):
//   - Launch, create, connection, inputs: plugins/webapi/connector/plugin.go Create and
//     pluginmachinery/internal/webapi/launcher.go (a Create error is a retryable failure);
//   - Check, sync: pluginmachinery/internal/webapi/cache.go (the GetTask error count,
//     never reset, and the system failure past MaxSystemFailures) and monitor.go (that
//     failure is concluded only while no resource was ever read);
//   - status, writeOutputs: plugin.go Status and writeOutput, and
//     pluginmachinery/ioutils/remote_file_output_reader.go;
//   - Abort: plugin.go Delete; Client: plugins/webapi/connector/client.go.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Phases the plugin machinery reports for a task (flyteplugins' core.Phase names).
const (
	Queued           = "Queued"
	WaitingResources = "WaitingForResources"
	Initializing     = "Initializing"
	Running          = "Running"
	Success          = "Success"
	RetryableFailure = "RetryableFailure"
	PermanentFailure = "PermanentFailure"
)

// Error codes the plugin machinery attaches to failures.
const (
	TaskFailedWithError = "TaskFailedWithError"
	CacheFailed         = "AutoRefreshCacheFailed"
)

// Outcome is what the backend concludes after one round: a phase (with code and reason
// for failures), or Err for a system error the plugin returned instead of a phase.
type Outcome struct {
	Phase    string
	Code     string
	Message  string
	Outputs  map[string]any // the core.LiteralMap written on success, as JSON values
	Resource map[string]any // the last GetTask resource, as JSON values
	Err      error
}

// Terminal says whether the backend stops polling.
func (o Outcome) Terminal() bool {
	return o.Err != nil || o.Phase == Success || o.Phase == RetryableFailure || o.Phase == PermanentFailure
}

func (o Outcome) String() string {
	if o.Err != nil {
		return "system error: " + o.Err.Error()
	}
	return fmt.Sprintf("%s [%s] %s", o.Phase, o.Code, o.Message)
}

// Task is one task execution as the backend hands it to the plugin.
type Task struct {
	Template     string // protojson core.TaskTemplate
	Inputs       string // protojson core.LiteralMap ({"literals": {...}}), "" for none
	OutputPrefix string // a local directory: the test's blob store
	Name         string // the execution's generated name
}

// Item is the plugin's cached state of a launched task (the webapi cache item).
type Item struct {
	task         Task
	template     *dynamicpb.Message
	category     *dynamicpb.Message
	meta         []byte
	connection   *dynamicpb.Message
	resource     *dynamicpb.Message
	SyncFailures int
	errorMessage string
	systemFailed bool
}

// Meta is the resource_meta the daemon returned from CreateTask.
func (i *Item) Meta() []byte { return i.meta }

// Plugin is the connector plugin's lifecycle over one Client.
type Plugin struct {
	Client *Client
	// Secrets is the backend's secret manager: secret name -> value.
	Secrets map[string]string
	// MaxSystemFailures is the GetTask error budget (a task fails after more than this).
	MaxSystemFailures int
	categories        map[string]bool
}

// NewPlugin is a plugin with the backend's defaults over client.
func NewPlugin(client *Client) *Plugin {
	return &Plugin{Client: client, Secrets: map[string]string{}, MaxSystemFailures: 5}
}

// WatchConnectors refreshes which task categories the endpoint serves.
func (p *Plugin) WatchConnectors(ctx context.Context) error {
	categories, err := p.Client.Categories(ctx)
	if err != nil {
		return err
	}
	p.categories = categories
	return nil
}

func (p *Plugin) pkg(name string) string { return p.Client.schema.Messages + "." + name }

// Launch is the plugin's Create: on an error the task fails retryably with the error text.
func (p *Plugin) Launch(ctx context.Context, task Task) (*Item, Outcome) {
	item, err := p.create(ctx, task)
	if err != nil {
		return nil, Outcome{Phase: RetryableFailure, Code: TaskFailedWithError, Message: err.Error()}
	}
	return item, Outcome{Phase: Queued, Message: "launched"}
}

func (p *Plugin) create(ctx context.Context, task Task) (*Item, error) {
	s := p.Client.schema
	template, err := s.FromJSON(s.Core+".TaskTemplate", task.Template)
	if err != nil {
		return nil, fmt.Errorf("failed to read task template with error: %v", err)
	}
	tree := s.Tree(template)
	category, err := s.FromJSON(p.pkg("TaskCategory"), fmt.Sprintf(`{"name": %q, "version": %d}`,
		str(tree["type"]), num(tree["task_type_version"])))
	if err != nil {
		return nil, err
	}
	if !p.categories[categoryKey(str(tree["type"]), num(tree["task_type_version"]))] {
		return nil, fmt.Errorf("no connector found for task type [%s] and version [%d]",
			str(tree["type"]), num(tree["task_type_version"]))
	}
	connection, err := p.connection(template)
	if err != nil {
		return nil, err
	}
	req := s.New(p.pkg("CreateTaskRequest"))
	set(req, "template", template)
	set(req, "output_prefix", task.OutputPrefix)
	set(req, "connection", connection)
	set(req, "task_execution_metadata", p.metadata(task))
	if task.Inputs != "" {
		inputs, err := p.inputs(task.Inputs)
		if err != nil {
			return nil, fmt.Errorf("failed to read inputs with error: %v", err)
		}
		set(req, "inputs", inputs)
	}
	resp, err := p.Client.Call(ctx, "AsyncConnectorService", "CreateTask", req,
		p.pkg("CreateTaskResponse"))
	if err != nil {
		return nil, fmt.Errorf("failed to create task from connector with %v", err)
	}
	meta := get(resp, "resource_meta").Bytes()
	return &Item{task: task, template: template, category: category, meta: meta,
		connection: connection}, nil
}

// connection is the template's custom read as a core.Connection, each secret name
// replaced by the secret's value from the secret manager.
func (p *Plugin) connection(template *dynamicpb.Message) (*dynamicpb.Message, error) {
	s := p.Client.schema
	custom, _ := asJSON(s, get(template, "custom"))
	connection := s.New(s.Core + ".Connection")
	if custom != "" {
		opts := protojson.UnmarshalOptions{DiscardUnknown: true}
		if err := opts.Unmarshal([]byte(custom), connection); err != nil {
			return nil, fmt.Errorf("failed to unmarshal connection from task template custom: %v", err)
		}
	}
	secrets := connection.Mutable(field(connection, "secrets")).Map()
	var missing error
	secrets.Range(func(key protoreflect.MapKey, name protoreflect.Value) bool {
		value, ok := p.Secrets[name.String()]
		if !ok {
			missing = fmt.Errorf("Failed to get secret value with error: no secret %q", name.String())
			return false
		}
		secrets.Set(key, protoreflect.ValueOfString(value))
		return true
	})
	return connection, missing
}

// inputs turns a LiteralMap into task.Inputs, named literals in map order (unstable).
func (p *Plugin) inputs(literalMap string) (*dynamicpb.Message, error) {
	s := p.Client.schema
	parsed, err := s.FromJSON(s.Core+".LiteralMap", literalMap)
	if err != nil {
		return nil, err
	}
	inputs := s.New(s.Task + ".Inputs")
	list := inputs.Mutable(field(inputs, "literals")).List()
	get(parsed, "literals").Map().Range(func(key protoreflect.MapKey, value protoreflect.Value) bool {
		named := s.New(s.Task + ".NamedLiteral")
		set(named, "name", key.String())
		named.Set(field(named, "value"), value)
		list.Append(protoreflect.ValueOfMessage(named))
		return true
	})
	return inputs, nil
}

func (p *Plugin) metadata(task Task) *dynamicpb.Message {
	meta, err := p.Client.schema.FromJSON(p.pkg("TaskExecutionMetadata"), fmt.Sprintf(`{
		"task_execution_id": {"task_id": {"project": "flytesnacks", "domain": "development",
			"name": "backend.suite"}, "retry_attempt": 0},
		"namespace": "flytesnacks-development",
		"labels": {"execution-id": %q},
		"k8s_service_account": "default",
		"environment_variables": {"FLYTE_SUITE": "backend"}
	}`, task.Name))
	if err != nil {
		panic(err)
	}
	return meta
}

// Check is one round of the backend for a launched task: the cache's sync (GetTask,
// counting errors against the budget) and then the monitor's conclusion.
func (p *Plugin) Check(ctx context.Context, item *Item) Outcome {
	p.sync(ctx, item)
	if item.resource == nil {
		if item.systemFailed {
			return Outcome{Phase: PermanentFailure, Code: CacheFailed, Message: item.errorMessage}
		}
		return Outcome{Phase: Queued, Message: "job submitted"}
	}
	return p.status(ctx, item)
}

func (p *Plugin) sync(ctx context.Context, item *Item) {
	if item.resource != nil && terminal(phaseName(item.resource)) {
		return
	}
	if item.SyncFailures > p.MaxSystemFailures {
		item.systemFailed = true
		return
	}
	req := p.Client.schema.New(p.pkg("GetTaskRequest"))
	set(req, "task_category", item.category)
	set(req, "resource_meta", item.meta)
	set(req, "output_prefix", item.task.OutputPrefix)
	set(req, "connection", item.connection)
	resp, err := p.Client.Call(ctx, "AsyncConnectorService", "GetTask", req, p.pkg("GetTaskResponse"))
	if err != nil {
		item.SyncFailures++
		item.errorMessage = fmt.Sprintf("failed to get task from connector with %v", err)
		return
	}
	item.resource = get(resp, "resource").Message().Interface().(*dynamicpb.Message)
}

func phaseName(resource *dynamicpb.Message) string {
	f := field(resource, "phase")
	value := f.Enum().Values().ByNumber(resource.Get(f).Enum())
	if value == nil {
		return fmt.Sprint(resource.Get(f).Enum())
	}
	return string(value.Name())
}

func terminal(phase string) bool {
	return phase == "SUCCEEDED" || phase == "FAILED" || phase == "RETRYABLE_FAILED" || phase == "ABORTED"
}

// status is the plugin's phase mapping of the last resource.
func (p *Plugin) status(ctx context.Context, item *Item) Outcome {
	tree := p.Client.schema.Tree(item.resource)
	message := str(tree["message"])
	out := Outcome{Resource: tree}
	switch phase := phaseName(item.resource); phase {
	case "QUEUED":
		out.Phase, out.Message = Queued, message
	case "WAITING_FOR_RESOURCES":
		out.Phase, out.Message = WaitingResources, message
	case "INITIALIZING":
		out.Phase, out.Message = Initializing, message
	case "RUNNING":
		out.Phase = Running
	case "SUCCEEDED":
		outputs, err := p.writeOutputs(item)
		if err != nil {
			out.Err = err
			return out
		}
		out.Phase, out.Outputs = Success, outputs
	case "ABORTED":
		out.Phase, out.Code, out.Message = PermanentFailure, TaskFailedWithError,
			"failed to run the job with aborted phase."
	case "FAILED":
		out.Phase, out.Code, out.Message = PermanentFailure, TaskFailedWithError,
			"failed to run the job: "+message
	case "RETRYABLE_FAILED":
		out.Phase, out.Code, out.Message = RetryableFailure, TaskFailedWithError,
			"failed to run the job: "+message
	default:
		out.Err = fmt.Errorf("unknown execution phase [%s].", phase)
	}
	return out
}

// writeOutputs reads the outputs as the plugin does (inline, else <prefix>/outputs.pb)
// when the template declares any, and writes them to <prefix>/outputs.pb.
func (p *Plugin) writeOutputs(item *Item) (map[string]any, error) {
	s := p.Client.schema
	declared, _ := s.Tree(item.template)["interface"].(map[string]any)
	outputsDecl, _ := declared["outputs"].(map[string]any)
	if outputsDecl == nil || outputsDecl["variables"] == nil {
		return nil, nil
	}
	path := filepath.Join(strings.TrimPrefix(item.task.OutputPrefix, "file://"), "outputs.pb")
	literalMap := s.New(s.Core + ".LiteralMap")
	if item.resource.Has(field(item.resource, "outputs")) {
		target := literalMap.Mutable(field(literalMap, "literals")).Map()
		list := get(get(item.resource, "outputs").Message().Interface(), "literals").List()
		for i := 0; i < list.Len(); i++ {
			named := list.Get(i).Message()
			name := named.Get(named.Descriptor().Fields().ByName("name")).String()
			target.Set(protoreflect.ValueOfString(name).MapKey(),
				named.Get(named.Descriptor().Fields().ByName("value")))
		}
		raw, err := proto.Marshal(literalMap)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			return nil, err
		}
	} else {
		// The backend reads the file when it gathers the node's outputs; a file it cannot
		// read is a system error there, as it is here.
		raw, err := os.ReadFile(path)
		if err == nil {
			err = proto.Unmarshal(raw, literalMap)
		}
		if err != nil {
			return nil, fmt.Errorf("failed to read data from dataDir [%s]. Error: %v", path, err)
		}
	}
	literals, _ := s.Tree(literalMap)["literals"].(map[string]any)
	return literals, nil
}

// Abort is the plugin's Delete: DeleteTask with the stored meta and connection.
func (p *Plugin) Abort(ctx context.Context, item *Item) error {
	req := p.Client.schema.New(p.pkg("DeleteTaskRequest"))
	set(req, "task_category", item.category)
	set(req, "resource_meta", item.meta)
	set(req, "connection", item.connection)
	_, err := p.Client.Call(ctx, "AsyncConnectorService", "DeleteTask", req, p.pkg("DeleteTaskResponse"))
	if err != nil {
		return fmt.Errorf("failed to delete task from connector with %v", err)
	}
	return nil
}

// Run launches a task and checks it every `every` until the backend concludes, or
// returns the last outcome when `within` has passed.
func (p *Plugin) Run(ctx context.Context, task Task, every, within time.Duration) (*Item, Outcome) {
	item, out := p.Launch(ctx, task)
	if item == nil {
		return nil, out
	}
	return item, p.Follow(ctx, item, every, within)
}

// Follow checks a launched task every `every` until it is terminal or `within` passed.
func (p *Plugin) Follow(ctx context.Context, item *Item, every, within time.Duration) Outcome {
	deadline := time.Now().Add(within)
	for {
		out := p.Check(ctx, item)
		if out.Terminal() || time.Now().After(deadline) {
			return out
		}
		time.Sleep(every)
	}
}
