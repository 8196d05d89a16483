{{/* Names, labels and the pieces both Deployments share. */}}

{{- define "wasmbot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wasmbot.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "wasmbot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "wasmbot.labels" -}}
helm.sh/chart: {{ include "wasmbot.chart" . }}
{{ include "wasmbot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: wasmbot
{{- end }}

{{- define "wasmbot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wasmbot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "server"). */}}
{{- define "wasmbot.componentSelectorLabels" -}}
{{ include "wasmbot.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "wasmbot.componentLabels" -}}
{{ include "wasmbot.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* A worker pool's labels: (dict "root" $ "pool" NAME). The pool from worker.* (no name)
     keeps the worker selector of charts before pools, which a Deployment cannot change. */}}
{{- define "wasmbot.workerSelectorLabels" -}}
{{ include "wasmbot.componentSelectorLabels" (dict "root" .root "component" "worker") }}
{{- if .pool }}
wasmbot/worker-pool: {{ .pool }}
{{- end }}
{{- end }}

{{- define "wasmbot.workerLabels" -}}
{{ include "wasmbot.componentLabels" (dict "root" .root "component" "worker") }}
{{- if .pool }}
wasmbot/worker-pool: {{ .pool }}
{{- end }}
{{- end }}

{{/* The worker pools as a JSON list, by name: worker.pools, each key a pool leaves out taken
     from worker.*; or, with no pools, one unnamed pool of worker.* (RELEASE-wasmbot-worker). */}}
{{- define "wasmbot.workerPools" -}}
{{- $w := .Values.worker }}
{{- $defaults := pick $w "replicas" "concurrency" "toolchains" "extraArgs" "extraEnv" "resources" "nodeSelector" "tolerations" "affinity" }}
{{- $pools := list }}
{{- range $name, $given := $w.pools }}
{{- $pool := merge (dict "name" $name) (deepCopy (default dict $given)) }}
{{- range $key, $value := $defaults }}
{{- if not (hasKey $pool $key) }}
{{- $_ := set $pool $key $value }}
{{- end }}
{{- end }}
{{- $pools = append $pools $pool }}
{{- else }}
{{- $pools = list (merge (dict "name" "") $defaults) }}
{{- end }}
{{- toJson $pools }}
{{- end }}

{{- define "wasmbot.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "wasmbot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wasmbot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Secret names: the one you manage, else the one the chart creates from values. */}}
{{- define "wasmbot.slackSecret" -}}
{{- default (printf "%s-slack" (include "wasmbot.fullname" .)) .Values.slack.existingSecret }}
{{- end }}

{{- define "wasmbot.githubSecret" -}}
{{- default (printf "%s-github" (include "wasmbot.fullname" .)) .Values.github.existingSecret }}
{{- end }}

{{- define "wasmbot.logLinkKeySecret" -}}
{{- default (printf "%s-log-link-key" (include "wasmbot.fullname" .)) .Values.logLinkKey.existingSecret }}
{{- end }}

{{/* Whether the chart creates a Secret: values are given and no existing Secret is named. */}}
{{- define "wasmbot.slackCreatesSecret" -}}
{{- $s := .Values.slack }}
{{- if and $s.enabled (not $s.existingSecret) (or $s.signingSecret $s.botToken $s.appToken) }}true{{ end }}
{{- end }}

{{- define "wasmbot.githubCreatesSecret" -}}
{{- $g := .Values.github }}
{{- if and $g.enabled (not $g.existingSecret) (or $g.webhookSecret $g.token $g.appPrivateKey) }}true{{ end }}
{{- end }}

{{- define "wasmbot.dataDir" -}}{{ .Values.dataDir }}{{- end }}
{{- define "wasmbot.dockerConfigDir" -}}/etc/wasmbot/docker{{- end }}

{{/* Helm reads every number in values as a float; write whole numbers as TOML integers
     (worker_concurrency = 4, not 4.0). Changes the maps it is given, in place. */}}
{{- define "wasmbot.wholeNumbers" -}}
{{- $node := . }}
{{- range $key, $value := $node }}
{{- if and (kindIs "float64" $value) (eq $value (floor $value)) }}
{{- $_ := set $node $key (int64 $value) }}
{{- else if kindIs "map" $value }}
{{- include "wasmbot.wholeNumbers" $value }}
{{- else if kindIs "slice" $value }}
{{- range $item := $value }}{{ if kindIs "map" $item }}{{ include "wasmbot.wholeNumbers" $item }}{{ end }}{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{/* wasmbot.toml: the user's config, plus what the chart's own values decide. */}}
{{- define "wasmbot.toml" -}}
{{- $config := deepCopy .Values.config }}
{{- $_ := set $config "data_dir" (include "wasmbot.dataDir" .) }}
{{- $_ = set $config "container_engine" .Values.worker.runtime.engine }}
{{- if .Values.registry.dockerConfigSecret }}
{{- $_ = set $config "docker_config" (printf "%s/config.json" (include "wasmbot.dockerConfigDir" .)) }}
{{- end }}
{{- if .Values.registry.passwords }}
{{- $registries := default dict $config.registries }}
{{- range $i, $p := .Values.registry.passwords }}
{{- $entry := default dict (get $registries $p.host) }}
{{- $_ = set $entry "username" $p.username }}
{{- $_ = set $entry "password_file" (printf "/etc/wasmbot/registry-passwords/%d/password" $i) }}
{{- $_ = set $registries $p.host $entry }}
{{- end }}
{{- $_ = set $config "registries" $registries }}
{{- end }}
{{- if and .Values.github.enabled (eq .Values.github.auth "app") }}
{{- $_ = set $config "github_app_id" (int64 .Values.github.appId) }}
{{- end }}
{{- include "wasmbot.wholeNumbers" $config }}
{{- toToml $config }}
{{- end }}

{{/* A secretKeyRef environment variable. */}}
{{- define "wasmbot.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}

{{/* Environment both Deployments share: the config file, Redis and the front ends' secrets. */}}
{{- define "wasmbot.env" -}}
- name: WASMBOT_CONFIG
  value: /etc/wasmbot/config/wasmbot.toml
- name: HOME
  value: /tmp
{{- if .Values.redis.existingSecret }}
{{ include "wasmbot.secretEnv" (dict "name" "REDIS_URL" "secret" .Values.redis.existingSecret "key" .Values.redis.existingSecretKey) }}
{{- else }}
- name: REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- end }}
{{- if .Values.slack.enabled }}
{{- $secret := include "wasmbot.slackSecret" . }}
{{- $keys := .Values.slack.keys }}
{{ include "wasmbot.secretEnv" (dict "name" "SLACK_SIGNING_SECRET" "secret" $secret "key" $keys.signingSecret) }}
{{ include "wasmbot.secretEnv" (dict "name" "SLACK_BOT_TOKEN" "secret" $secret "key" $keys.botToken) }}
{{ include "wasmbot.secretEnv" (dict "name" "SLACK_APP_TOKEN" "secret" $secret "key" $keys.appToken "optional" true) }}
{{- end }}
{{- if .Values.github.enabled }}
{{- $secret := include "wasmbot.githubSecret" . }}
{{- $keys := .Values.github.keys }}
{{ include "wasmbot.secretEnv" (dict "name" "GITHUB_WEBHOOK_SECRET" "secret" $secret "key" $keys.webhookSecret) }}
{{- if eq .Values.github.auth "app" }}
{{ include "wasmbot.secretEnv" (dict "name" "GITHUB_APP_PRIVATE_KEY" "secret" $secret "key" $keys.appPrivateKey) }}
{{- else }}
{{ include "wasmbot.secretEnv" (dict "name" "GITHUB_TOKEN" "secret" $secret "key" $keys.token) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Volumes both Deployments share: config, /tmp, registry credentials (each adds its "data"). */}}
{{- define "wasmbot.volumes" -}}
- name: config
  configMap:
    name: {{ include "wasmbot.fullname" . }}
- name: tmp
  emptyDir: {}
{{- if .Values.registry.dockerConfigSecret }}
- name: docker-config
  secret:
    secretName: {{ .Values.registry.dockerConfigSecret }}
    items:
      - key: .dockerconfigjson
        path: config.json
{{- end }}
{{- range $i, $p := .Values.registry.passwords }}
- name: registry-password-{{ $i }}
  secret:
    secretName: {{ $p.existingSecret }}
    items:
      - key: {{ $p.key }}
        path: password
{{- end }}
{{- end }}

{{- define "wasmbot.volumeMounts" -}}
- name: config
  mountPath: /etc/wasmbot/config
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .Values.registry.dockerConfigSecret }}
- name: docker-config
  mountPath: {{ include "wasmbot.dockerConfigDir" . }}
  readOnly: true
{{- end }}
{{- range $i, $p := .Values.registry.passwords }}
- name: registry-password-{{ $i }}
  mountPath: /etc/wasmbot/registry-passwords/{{ $i }}
  readOnly: true
{{- end }}
{{- end }}
