{{/* Object names: flyteconnector names objects after the chart (nameOverride), not the release. */}}
{{- define "fc.name" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fc.namespace" -}}
{{- default .Release.Namespace .Values.forceNamespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of a workload: "fc.selectorLabels" (dict "root" . "component" "daemon"). */}}
{{- define "fc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fc.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fc.labels" -}}
{{ include "fc.selectorLabels" . }}
helm.sh/chart: {{ include "fc.chart" .root }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- with .extraLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* metadata: name, namespace, labels, annotations.
     (dict "root" . "name" N "component" C ["annotations" A] ["extraLabels" L]) */}}
{{- define "fc.metadata" -}}
name: {{ .name }}
namespace: {{ include "fc.namespace" .root }}
labels:
  {{- include "fc.labels" . | nindent 2 }}
{{- $annotations := merge (deepCopy (.annotations | default dict)) (.root.Values.commonAnnotations | default dict) }}
{{- with $annotations }}
annotations:
  {{- tpl (toYaml .) $.root | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "fc.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{ $image.repository }}@{{ $image.digest }}
{{- else -}}
{{ $image.repository }}:{{ $image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* `serve` options as --kebab-case=value arguments, in key order. */}}
{{- define "fc.serveArgs" -}}
{{- range $key, $value := . }}
{{- $flag := printf "--%s" (kebabcase $key) }}
{{- if kindIs "bool" $value }}
{{- if $value }}
- {{ $flag | quote }}
{{- end }}
{{- else if kindIs "slice" $value }}
{{- if $value }}
- {{ printf "%s=%s" $flag (join "," $value) | quote }}
{{- end }}
{{- else if and (kindIs "float64" $value) (eq $value (floor $value)) }}
- {{ printf "%s=%d" $flag (int64 $value) | quote }}
{{- else if not (kindIs "invalid" $value) }}
{{- if ne (toString $value) "" }}
- {{ printf "%s=%v" $flag $value | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* extraArgs: a list as it is, or a map of option: value. */}}
{{- define "fc.extraArgs" -}}
{{- if kindIs "slice" . }}
{{- range . }}
- {{ . | quote }}
{{- end }}
{{- else }}
{{- include "fc.serveArgs" . }}
{{- end }}
{{- end -}}

{{/* podEnv: a list of EnvVar as it is, or a map of name: value. */}}
{{- define "fc.env" -}}
{{- if kindIs "slice" . }}
{{- toYaml . }}
{{- else }}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* A probe with a grpc action: ports.containerPort unless it names a port; a tcpSocket
     probe instead when the daemon serves TLS (kubelet's gRPC probes cannot speak it). */}}
{{- define "fc.probe" -}}
{{- $probe := deepCopy .probe -}}
{{- if hasKey $probe "grpc" -}}
{{- $grpc := $probe.grpc -}}
{{- if .root.Values.tls.secretName -}}
{{- $_ := unset $probe "grpc" -}}
{{- $_ := set $probe "tcpSocket" (dict "port" ($grpc.port | default .root.Values.ports.containerPort)) -}}
{{- else if not $grpc.port -}}
{{- $_ := set $grpc "port" .root.Values.ports.containerPort -}}
{{- end -}}
{{- end -}}
{{- toYaml $probe -}}
{{- end -}}

{{/* Whether the Deployment signs resource_meta: a signing connector of your own
     (metaKey.enabled), or a connections rule narrowed by project or domain (the daemon
     wraps such a task's meta in a signed envelope). */}}
{{- define "fc.deploymentSigns" -}}
{{- $signs := .Values.metaKey.enabled -}}
{{- if .Values.connections.enabled -}}
{{- range .Values.connections.rules -}}
{{- if or .project .domain -}}{{- $signs = true -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- if $signs }}true{{ end -}}
{{- end -}}

{{/* Whether a signing connector runs anywhere here, so the key Secret is needed. */}}
{{- define "fc.metaKeyNeeded" -}}
{{- if or (include "fc.deploymentSigns" .) .Values.localConnectors.enabled }}true{{ end -}}
{{- end -}}

{{- define "fc.metaKeySecret" -}}
{{- .Values.metaKey.existingSecret | default (printf "%s-meta-key" (include "fc.name" .)) -}}
{{- end -}}

{{- define "fc.connectionsConfigMap" -}}
{{- .Values.connections.existingConfigMap | default (printf "%s-connections" (include "fc.name" .)) -}}
{{- end -}}

{{- define "fc.credentialsSecret" -}}
{{- .Values.connections.credentials.secretName | default (printf "%s-credentials" (include "fc.name" .)) -}}
{{- end -}}

{{- define "fc.automountToken" -}}
{{- if kindIs "bool" .Values.serviceAccount.automountToken -}}
{{- .Values.serviceAccount.automountToken -}}
{{- else -}}
{{- .Values.rbac.enabled -}}
{{- end -}}
{{- end -}}
