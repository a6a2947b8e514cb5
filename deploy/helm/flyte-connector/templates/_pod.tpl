{{/* The pod template of both workloads: (dict "root" . "local" true|false). */}}
{{- define "fc.podTemplate" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $local := .local -}}
{{- $component := ternary "local" "daemon" $local -}}
{{- $keyed := or $local (include "fc.deploymentSigns" $root) -}}
{{- $serve := deepCopy $v.serve -}}
{{- if $local }}
{{- $_ := set $serve "plugins" $v.localConnectors.plugins }}
{{- $_ := set $serve "modules" list }}
{{- end }}
metadata:
  labels:
    {{- include "fc.selectorLabels" (dict "root" $root "component" $component) | nindent 4 }}
    {{- with $v.commonLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- if and $v.metrics.enabled $v.metrics.podAnnotations }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ $v.metrics.port | quote }}
    prometheus.io/path: /metrics
    {{- end }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "fc.name" $root }}
  automountServiceAccountToken: {{ include "fc.automountToken" $root }}
  # preStop pause + the daemon's --grace-period + margin to exit.
  terminationGracePeriodSeconds: {{ add $v.preStopSeconds ($v.serve.gracePeriod | default 25) 10 }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
    {{- if $local }}
    # Makes the state volume writable for the daemon's user.
    fsGroupChangePolicy: OnRootMismatch
    {{- end }}
  {{- if not $local }}
  {{- if kindIs "slice" $v.topologySpreadConstraints }}
  {{- with $v.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- tpl (toYaml .) $root | nindent 4 }}
  {{- end }}
  {{- else if eq (toString $v.topologySpreadConstraints) "default" }}
  topologySpreadConstraints:
    {{- range list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
    - maxSkew: 1
      topologyKey: {{ . }}
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "fc.selectorLabels" (dict "root" $root "component" $component) | nindent 10 }}
    {{- end }}
  {{- end }}
  {{- end }}
  containers:
    - name: connector
      image: {{ include "fc.image" $root | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      command: ["flyte-connector", "serve"]
      args:
        - "--port={{ $v.ports.containerPort }}"
        - "--metrics-port={{ ternary $v.metrics.port 0 $v.metrics.enabled }}"
        {{- with include "fc.serveArgs" $serve | trim }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- if $keyed }}
        # Signs resource_meta of connectors that hold host-local state (docs/security.md).
        - "--meta-key-file=/etc/flyte-connector/meta-key/key"
        {{- end }}
        {{- if $v.connections.enabled }}
        - "--connections={{ $v.connections.mountPath }}/{{ $v.connections.file }}"
        {{- end }}
        {{- if $v.tls.secretName }}
        - "--tls-cert=/etc/flyte-connector/tls/tls.crt"
        - "--tls-key=/etc/flyte-connector/tls/tls.key"
        {{- end }}
        {{- with include "fc.extraArgs" $v.extraArgs | trim }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- range $v.args }}
        - {{ . | quote }}
        {{- end }}
      {{- $env := include "fc.env" $v.podEnv | fromYamlArray }}
      {{- if $local }}
      {{- $env = concat $env (list (dict "name" "FLYTE_CONNECTOR_SHELL_STATE_DIR" "value" "/var/lib/flyte-connector/shell") (dict "name" "FLYTE_CONNECTOR_SQL_STATE_DIR" "value" "/var/lib/flyte-connector/sql")) $v.localConnectors.env }}
      {{- end }}
      {{- with $env }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: {{ $v.ports.name }}
          containerPort: {{ $v.ports.containerPort }}
          protocol: TCP
        {{- if $v.metrics.enabled }}
        - name: metrics
          containerPort: {{ $v.metrics.port }}
          protocol: TCP
        {{- end }}
      {{- with $v.startupProbe }}
      startupProbe:
        {{- include "fc.probe" (dict "root" $root "probe" .) | nindent 8 }}
      {{- end }}
      {{- with $v.readinessProbe }}
      readinessProbe:
        {{- include "fc.probe" (dict "root" $root "probe" .) | nindent 8 }}
      {{- end }}
      {{- with $v.livenessProbe }}
      livenessProbe:
        {{- include "fc.probe" (dict "root" $root "probe" .) | nindent 8 }}
      {{- end }}
      {{- if $v.preStopSeconds }}
      lifecycle:
        preStop:
          exec:
            command: ["sleep", "{{ $v.preStopSeconds }}"]
      {{- end }}
      resources:
        {{- toYaml (ternary $v.localConnectors.resources $v.resources $local) | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if $local }}
        - name: state
          mountPath: /var/lib/flyte-connector
        {{- end }}
        {{- if $v.connectorSecret.secretData }}
        - name: connector-secret
          mountPath: /etc/secrets
          readOnly: true
        {{- end }}
        {{- if $keyed }}
        - name: meta-key
          mountPath: /etc/flyte-connector/meta-key
          readOnly: true
        {{- end }}
        {{- if $v.connections.enabled }}
        - name: connections
          mountPath: {{ $v.connections.mountPath }}
          readOnly: true
        - name: credentials
          mountPath: {{ $v.connections.credentials.mountPath }}
          readOnly: true
        {{- end }}
        {{- if $v.tls.secretName }}
        - name: tls
          mountPath: /etc/flyte-connector/tls
          readOnly: true
        {{- end }}
        {{- with $v.additionalVolumeMounts }}
        {{- tpl (toYaml .) $root | nindent 8 }}
        {{- end }}
    {{- with $v.additionalContainers }}
    {{- tpl (toYaml .) $root | nindent 4 }}
    {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ $v.tmpSizeLimit }}
    {{- if $v.connectorSecret.secretData }}
    - name: connector-secret
      secret:
        secretName: {{ include "fc.name" $root }}
    {{- end }}
    {{- if $keyed }}
    - name: meta-key
      secret:
        secretName: {{ include "fc.metaKeySecret" $root }}
        defaultMode: 0440
    {{- end }}
    {{- if $v.connections.enabled }}
    - name: connections
      configMap:
        name: {{ include "fc.connectionsConfigMap" $root }}
    # The files the connections file names; optional, so the daemon starts before you
    # create it, with rules that read none of its files.
    - name: credentials
      secret:
        secretName: {{ include "fc.credentialsSecret" $root }}
        defaultMode: 0440
        optional: true
    {{- end }}
    {{- if $v.tls.secretName }}
    - name: tls
      secret:
        secretName: {{ $v.tls.secretName }}
    {{- end }}
    {{- with $v.additionalVolumes }}
    {{- tpl (toYaml .) $root | nindent 4 }}
    {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- tpl (toYaml .) $root | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- tpl (toYaml .) $root | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- tpl (toYaml .) $root | nindent 4 }}
  {{- end }}
{{- end -}}
