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
// Flyte 1 (the Flyte1 dialect) is propeller's plugin of the same path on flyteorg/flyte's
// `master` (read at its commit of August 2026, flyteidl 1.16): the same lifecycle with
// flyteidl's agent services, no `connection`, the deprecated `task_type` and `state`, the
// sync path (execute_sync.go), and `agent_error` read from a sync answer only.

import (
	"context"
	"fmt"
	"slices"
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
	// StateOnly makes it a propeller older than the resource's `phase`: it maps the
	// deprecated `state` only (Flyte 1; today's plugin reads it when phase is UNDEFINED).
	StateOnly  bool
	categories map[string]bool // listed (task type, version) -> its connector is sync
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

func (p *Plugin) dialect() Dialect { return p.Client.schema.Dialect }

// Launch is the plugin's Create: on an error the task fails retryably with the error
// text. A sync connector's answer is concluded at once when it is terminal.
func (p *Plugin) Launch(ctx context.Context, task Task) (*Item, Outcome) {
	item, resource, err := p.create(ctx, task)
	if err != nil {
		return nil, Outcome{Phase: RetryableFailure, Code: TaskFailedWithError, Message: err.Error()}
	}
	if resource != nil {
		item.resource = resource
		if out := p.status(ctx, item); out.Terminal() {
			return nil, out
		}
		item.resource = nil // the cache starts without it, as the launcher's does
	}
	return item, Outcome{Phase: Queued, Message: "launched"}
}

func (p *Plugin) create(ctx context.Context, task Task) (*Item, *dynamicpb.Message, error) {
	item, isSync, err := p.route(task)
	if err != nil {
		return nil, nil, err
	}
	req, err := p.createRequest(item)
	if err != nil {
		return nil, nil, err
	}
	if isSync {
		resource, err := p.executeSync(ctx, req)
		return item, resource, err
	}
	resp, err := p.Client.Call(ctx, p.dialect().Tasks, "CreateTask", req, p.pkg("CreateTaskResponse"))
	if err != nil {
		return nil, nil, fmt.Errorf("failed to create task from connector with %v", err)
	}
	item.meta = get(resp, "resource_meta").Bytes()
	return item, nil, nil
}

// route reads the task's template and category and whether its connector is sync, as the
// connector registry says (an unlisted task type fails or goes async, by the dialect).
func (p *Plugin) route(task Task) (*Item, bool, error) {
	s := p.Client.schema
	template, err := s.TaskTemplate(task.Template)
	if err != nil {
		return nil, false, fmt.Errorf("failed to read task template with error: %v", err)
	}
	tree := s.Tree(template)
	name, version := str(tree["type"]), num(tree["task_type_version"])
	category, err := s.FromJSON(p.pkg("TaskCategory"), fmt.Sprintf(`{"name": %q, "version": %d}`,
		name, version))
	if err != nil {
		return nil, false, err
	}
	isSync, listed := p.categories[categoryKey(name, version)]
	if !listed && !s.Unlisted {
		return nil, false, fmt.Errorf("no connector found for task type [%s] and version [%d]", name, version)
	}
	return &Item{task: task, template: template, category: category}, isSync, nil
}

// createRequest is the CreateTask request for the item: its connection (Flyte 2 only,
// kept on the item for later calls) and its inputs as the dialect's request takes them.
func (p *Plugin) createRequest(item *Item) (*dynamicpb.Message, error) {
	s := p.Client.schema
	req := s.New(p.pkg("CreateTaskRequest"))
	set(req, "template", item.template)
	set(req, "output_prefix", item.task.OutputPrefix)
	set(req, "task_execution_metadata", p.metadata(item.task))
	if has(req, "connection") {
		var err error
		if item.connection, err = p.connection(item.template); err != nil {
			return nil, err
		}
		set(req, "connection", item.connection)
	}
	if item.task.Inputs != "" || isLiteralMap(s, req, "inputs") {
		inputs, err := p.inputs(req, item.task.Inputs)
		if err != nil {
			return nil, fmt.Errorf("failed to read inputs with error: %v", err)
		}
		set(req, "inputs", inputs)
	}
	return req, nil
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

// inputs is a LiteralMap as the request's inputs field takes it: the map itself (Flyte 1,
// "" an empty one) or task.Inputs, named literals in map order (unstable).
func (p *Plugin) inputs(req *dynamicpb.Message, literalMap string) (*dynamicpb.Message, error) {
	s := p.Client.schema
	if literalMap == "" {
		literalMap = "{}"
	}
	parsed, err := s.FromJSON(s.Core+".LiteralMap", literalMap)
	if err != nil || isLiteralMap(s, req, "inputs") {
		return parsed, err
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

// isLiteralMap says whether the message's field is a core.LiteralMap (Flyte 1's inputs and
// outputs) rather than Flyte 2's named literals.
func isLiteralMap(s *Schema, msg *dynamicpb.Message, name string) bool {
	return field(msg, name).Message().FullName() == protoreflect.FullName(s.Core+".LiteralMap")
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
	if item.resource != nil && slices.Contains(p.dialect().Terminal, phaseName(item.resource)) {
		return
	}
	if item.SyncFailures > p.MaxSystemFailures {
		item.systemFailed = true
		return
	}
	req := p.request("GetTaskRequest", item)
	set(req, "output_prefix", item.task.OutputPrefix)
	resp, err := p.Client.Call(ctx, p.dialect().Tasks, "GetTask", req, p.pkg("GetTaskResponse"))
	if err != nil {
		item.SyncFailures++
		item.errorMessage = fmt.Sprintf("failed to get task from connector with %v", err)
		return
	}
	// The plugin keeps what it reads of the resource: not Flyte 1's agent_error here.
	item.resource = without(get(resp, "resource"), "agent_error")
}

// request is a Get or Delete request for the item: its category and meta, and its
// connection (Flyte 2) or the deprecated task_type beside the category (Flyte 1).
func (p *Plugin) request(name string, item *Item) *dynamicpb.Message {
	req := p.Client.schema.New(p.pkg(name))
	set(req, "task_category", item.category)
	set(req, "resource_meta", item.meta)
	if has(req, "connection") {
		set(req, "connection", item.connection)
	}
	if has(req, "task_type") {
		set(req, "task_type", get(item.category, "name").String())
	}
	return req
}

// without is a copy of a resource with the named field cleared where the type has it.
func without(resource protoreflect.Value, name string) *dynamicpb.Message {
	out := proto.Clone(resource.Message().Interface()).(*dynamicpb.Message)
	if has(out, name) {
		out.Clear(field(out, name))
	}
	return out
}

func phaseName(resource *dynamicpb.Message) string { return enumName(resource, "phase") }

// enumName is the name of an enum field's value (its number when the enum lacks it).
func enumName(msg *dynamicpb.Message, name string) string {
	f := field(msg, name)
	value := f.Enum().Values().ByNumber(msg.Get(f).Enum())
	if value == nil {
		return fmt.Sprint(msg.Get(f).Enum())
	}
	return string(value.Name())
}

// Abort is the plugin's Delete: DeleteTask with the stored meta and connection.
func (p *Plugin) Abort(ctx context.Context, item *Item) error {
	req := p.request("DeleteTaskRequest", item)
	_, err := p.Client.Call(ctx, p.dialect().Tasks, "DeleteTask", req, p.pkg("DeleteTaskResponse"))
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
