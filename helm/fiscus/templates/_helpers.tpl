{{/*
Names, labels and the pieces every service's objects share.
*/}}

{{- define "fiscus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name. Services are `<fullname>-<service>`, so it leaves room for
"-receipts" within the 63 characters of a Service name.
*/}}
{{- define "fiscus.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "fiscus.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fiscus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fiscus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fiscus.labels" -}}
helm.sh/chart: {{ include "fiscus.chart" . }}
{{ include "fiscus.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fiscus
{{- end }}

{{/* Selector labels of one service: call with (dict "root" $ "service" "receipts"). */}}
{{- define "fiscus.serviceSelectorLabels" -}}
{{ include "fiscus.selectorLabels" .root }}
app.kubernetes.io/component: {{ .service }}
{{- end }}

{{- define "fiscus.serviceLabels" -}}
{{ include "fiscus.labels" .root }}
app.kubernetes.io/component: {{ .service }}
{{- end }}

{{- define "fiscus.serviceName" -}}
{{- printf "%s-%s" (include "fiscus.fullname" .root) .service }}
{{- end }}

{{- define "fiscus.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fiscus.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "fiscus.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The fully-qualified gRPC service each process serves: its readiness is reported under it. */}}
{{- define "fiscus.grpcService" -}}
{{- get (dict "receipts" "fiscus.v1.ReceiptService" "payments" "fiscus.v1.PaymentService" "shifts" "fiscus.v1.ShiftService" "tokens" "fiscus.v1.TokenService") . }}
{{- end }}

{{/* Whether the service keeps secrets at rest and so needs keys.master_key. */}}
{{- define "fiscus.needsMasterKey" -}}
{{- if has . (list "receipts" "tokens") }}true{{ end }}
{{- end }}

{{/*
One service's configuration: the top-level `config`, the service's own `config` over it, and the
addresses the chart owns (listen, admin, peers). Returns TOML.
*/}}
{{- define "fiscus.serviceConfig" -}}
{{- $root := .root }}
{{- $svc := index $root.Values.services .service }}
{{- $config := include "fiscus.mergedConfig" . | fromJson }}
{{- $server := default (dict) (get $config "server") }}
{{- $_ := set $server "listen" (printf "0.0.0.0:%d" (int $svc.port)) }}
{{- $_ := set $config "server" $server }}
{{- $_ := set $config "admin" (dict "listen" (printf "0.0.0.0:%d" (int $svc.metricsPort))) }}
{{- $peers := default (dict) (get $config "peers") }}
{{- range $name := list "receipts" "payments" "shifts" "tokens" }}
{{- $peer := index $root.Values.services $name }}
{{- $_ := set $peers $name (printf "http://%s:%d" (include "fiscus.serviceName" (dict "root" $root "service" $name)) (int $peer.port)) }}
{{- end }}
{{- $_ := set $config "peers" $peers }}
{{- include "fiscus.toml" $config }}
{{- end }}

{{/*
The top-level `config` with one service's `config` over it, key by key (so that false, 0 and ""
override too), as JSON.
*/}}
{{- define "fiscus.mergedConfig" -}}
{{- $config := deepCopy (default (dict) .root.Values.config) }}
{{- $svc := index .root.Values.services .service }}
{{- range $section, $body := (default (dict) $svc.config) }}
{{- $into := deepCopy (default (dict) (get $config $section)) }}
{{- range $key, $value := $body }}
{{- $_ := set $into $key $value }}
{{- end }}
{{- $_ := set $config $section $into }}
{{- end }}
{{- toJson $config }}
{{- end }}

{{/* The migrations Job's configuration: only what `fiscus migrate` reads. Returns TOML. */}}
{{- define "fiscus.migrateConfig" -}}
{{- $config := dict "database" (deepCopy (default (dict) .Values.config.database)) "telemetry" (deepCopy (default (dict) .Values.config.telemetry)) }}
{{- include "fiscus.toml" $config }}
{{- end }}

{{/*
A dict of sections rendered as TOML: scalars and lists of scalars as `key = value`, a map as a
sub-table `[section.key]`, (JSON literals
are valid TOML for strings, numbers, booleans and arrays), lists of maps as `[[section.key]]`.
Null and empty-string values are left out: the binary's default applies.
*/}}
{{- define "fiscus.toml" -}}
{{- range $section, $body := . }}
{{- if $body }}
[{{ $section }}]
{{- range $key, $value := $body }}
{{- if and (not (kindIs "invalid" $value)) (ne (toString $value) "") (not (kindIs "map" $value)) (not (include "fiscus.isTableArray" $value)) }}
{{ $key }} = {{ toJson $value }}
{{- end }}
{{- end }}
{{- range $key, $value := $body }}
{{- if and (kindIs "map" $value) $value }}

[{{ $section }}.{{ $key }}]
{{- range $k, $v := $value }}
{{- if and (not (kindIs "invalid" $v)) (ne (toString $v) "") }}
{{ $k }} = {{ toJson $v }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- range $key, $value := $body }}
{{- if include "fiscus.isTableArray" $value }}
{{- range $entry := $value }}

[[{{ $section }}.{{ $key }}]]
{{- range $k, $v := $entry }}
{{- if and (not (kindIs "invalid" $v)) (ne (toString $v) "") (not (kindIs "map" $v)) }}
{{ $k }} = {{ toJson $v }}
{{- end }}
{{- end }}
{{- /* A table inside an entry (a merchant's `ebarimt`) follows it as a sub-table. */}}
{{- range $k, $v := $entry }}
{{- if and (kindIs "map" $v) $v }}
[{{ $section }}.{{ $key }}.{{ $k }}]
{{- range $kk, $vv := $v }}
{{- if and (not (kindIs "invalid" $vv)) (ne (toString $vv) "") }}
{{ $kk }} = {{ toJson $vv }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{ end }}
{{- end }}
{{- end }}

{{- define "fiscus.isTableArray" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) }}{{ if kindIs "map" (first .) }}true{{ end }}{{ end }}
{{- end }}

{{/* The pod and container security settings shared by every workload. */}}
{{- define "fiscus.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "fiscus.containerSecurityContext" -}}
{{ toYaml .Values.securityContext }}
{{- end }}

{{/* terminationGracePeriodSeconds: the drain delay and the grace the process gives in-flight calls, plus a margin. */}}
{{- define "fiscus.terminationGrace" -}}
{{- $root := .root }}
{{- $svc := index $root.Values.services .service }}
{{- $server := default (dict) (get (include "fiscus.mergedConfig" . | fromJson) "server") }}
{{- $ms := add (int (default 0 $server.drain_delay_ms)) (int (default 20000 $server.shutdown_grace_ms)) }}
{{- add (div (add $ms 999) 1000) (int $root.Values.terminationGraceExtraSeconds) }}
{{- end }}

{{/* The env entries that take a value from an existing Secret. */}}
{{- define "fiscus.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .ref.name | quote }}
      key: {{ .ref.key | quote }}
{{- end }}

{{/* One egress rule from {peers, ports}: no peers = any destination on those ports. */}}
{{- define "fiscus.egressRule" -}}
- ports:
    {{- toYaml .ports | nindent 4 }}
  {{- with .peers }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* The pods of the release's four services (not the migrations Job). */}}
{{- define "fiscus.servicePodsSelector" -}}
matchLabels:
  {{- include "fiscus.selectorLabels" . | nindent 2 }}
matchExpressions:
  - key: app.kubernetes.io/component
    operator: In
    values: [receipts, payments, shifts, tokens]
{{- end }}
