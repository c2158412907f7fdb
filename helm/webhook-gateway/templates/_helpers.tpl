{{/*
Named templates of the webhook-gateway chart.

Every template here reads only `.Values` and `.Release`, so another chart can call the
sidecar templates with a context of its own making:

  {{- $gw := dict "Values" (index .Values "webhook-gateway") "Release" .Release }}
  ...
      containers:
        - name: payments-api
          ...
        {{- include "webhook-gateway.sidecarContainer" $gw | nindent 8 }}
      volumes:
        {{- include "webhook-gateway.sidecarVolumes" $gw | nindent 8 }}

(docs/deployment.md, "Sidecar injection", has the whole example.) The chart's name is spelled
out instead of read from .Chart so that names agree in both contexts.
*/}}

{{- define "webhook-gateway.name" -}}
{{- default "webhook-gateway" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "webhook-gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "webhook-gateway.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels: only for this chart's own objects (they read .Chart). */}}
{{- define "webhook-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "webhook-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "webhook-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "webhook-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "webhook-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "webhook-gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "webhook-gateway.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (toString (required "image.tag (or image.digest) is required" .Values.image.tag)) -}}
{{- end -}}
{{- end -}}

{{/* The gateway's port: config.listen.port (8080 when unset). */}}
{{- define "webhook-gateway.port" -}}
{{- $listen := .Values.config.listen | default dict -}}
{{- int ($listen.port | default 8080) -}}
{{- end -}}

{{/* config.listen.metrics_port: /metrics on a port of its own ("" when unset or 0). */}}
{{- define "webhook-gateway.metricsPort" -}}
{{- $listen := .Values.config.listen | default dict -}}
{{- if $listen.metrics_port -}}{{- int $listen.metrics_port -}}{{- end -}}
{{- end -}}

{{/* The container port name that serves /metrics. */}}
{{- define "webhook-gateway.metricsPortName" -}}
{{- if include "webhook-gateway.metricsPort" . -}}gateway-metrics{{- else -}}gateway-http{{- end -}}
{{- end -}}

{{/* "true" when config.events.url is literally a PostgreSQL URL. */}}
{{- define "webhook-gateway.eventsOnPostgres" -}}
{{- $events := .Values.config.events | default dict -}}
{{- $url := toString ($events.url | default "memory://") -}}
{{- if or (hasPrefix "postgresql://" $url) (hasPrefix "postgres://" $url) -}}true{{- end -}}
{{- end -}}

{{/*
The gateway.yaml the ConfigMap holds: .Values.config with two defaults filled in, the rest as
written. tests/test_deploy.py applies the same two defaults before build_settings().
  listen.host   0.0.0.0 (the kubelet probes and the Service reach the pod IP)
  upstream.url  http://127.0.0.1:<apiPort>/events (the API container on loopback)
*/}}
{{- define "webhook-gateway.configData" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $listen := $cfg.listen -}}
{{- if not (kindIs "map" $listen) -}}
{{- $listen = dict -}}
{{- $_ := set $cfg "listen" $listen -}}
{{- end -}}
{{- if not $listen.host -}}
{{- $_ := set $listen "host" "0.0.0.0" -}}
{{- end -}}
{{- $upstream := $cfg.upstream -}}
{{- if not (kindIs "map" $upstream) -}}
{{- $upstream = dict -}}
{{- $_ := set $cfg "upstream" $upstream -}}
{{- end -}}
{{- if not $upstream.url -}}
{{- $_ := set $upstream "url" (printf "http://127.0.0.1:%d/events" (int .Values.apiPort)) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{- define "webhook-gateway.configChecksum" -}}
{{- include "webhook-gateway.configData" . | sha256sum -}}
{{- end -}}

{{/* The pod's grace period for a host chart: the value this chart checks against shutdown. */}}
{{- define "webhook-gateway.terminationGracePeriodSeconds" -}}
{{- int .Values.terminationGracePeriodSeconds -}}
{{- end -}}

{{/*
Checks that `helm template` / `helm install` run before anything reaches the cluster. Included
by the ConfigMap and the sidecar container, so a host chart gets them too.
*/}}
{{- define "webhook-gateway.validate" -}}
{{- $cfg := .Values.config | default dict -}}
{{- $shutdown := $cfg.shutdown | default dict -}}
{{- $delay := float64 ($shutdown.drain_delay | default 0) -}}
{{- $timeout := float64 ($shutdown.timeout | default 25) -}}
{{- $grace := float64 .Values.terminationGracePeriodSeconds -}}
{{- if le $grace (addf $delay $timeout) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be greater than config.shutdown.drain_delay (%v) + config.shutdown.timeout (%v): the kubelet would SIGKILL the gateway while it drains in-flight webhooks" $grace $delay $timeout) -}}
{{- end -}}
{{- $listen := $cfg.listen | default dict -}}
{{- if has (toString ($listen.host | default "0.0.0.0")) (list "127.0.0.1" "localhost" "::1") -}}
{{- fail "config.listen.host must not be a loopback address in Kubernetes (the kubelet probes the pod IP): use 0.0.0.0" -}}
{{- end -}}
{{- if and $listen.metrics_port (eq (int $listen.metrics_port) (int (include "webhook-gateway.port" .))) -}}
{{- fail (printf "config.listen.metrics_port (%v) must differ from config.listen.port: the gateway refuses to start with both on one port" $listen.metrics_port) -}}
{{- end -}}
{{- $upstream := $cfg.upstream | default dict -}}
{{- if and (not $upstream.url) (eq (int .Values.apiPort) (int (include "webhook-gateway.port" .))) -}}
{{- fail (printf "apiPort (%v) is the gateway's own port (config.listen.port): the gateway would forward to itself" .Values.apiPort) -}}
{{- end -}}
{{- $events := $cfg.events | default dict -}}
{{- $eventsUrl := toString ($events.url | default "memory://") -}}
{{- if and (eq (toString ($upstream.mode | default "sync")) "queue") (not (include "webhook-gateway.eventsOnPostgres" .)) (not (contains "${" $eventsUrl)) -}}
{{- fail "config.upstream.mode queue needs a durable event store: set config.events.url to postgresql://..." -}}
{{- end -}}
{{- $state := $cfg.state | default dict -}}
{{- $stateUrl := toString ($state.url | default "memory://") -}}
{{- if and (eq .Values.mode "standalone") (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) (hasPrefix "memory://" $stateUrl) -}}
{{- fail "several replicas (replicaCount > 1 or autoscaling.enabled) need shared dedup and rate-limit state: set config.state.url to redis:// or rediss://" -}}
{{- end -}}
{{- $scrapes := list -}}
{{- range $way := list "serviceMonitor" "podMonitor" -}}
{{- if (index $.Values.metrics $way).enabled -}}{{- $scrapes = append $scrapes (printf "metrics.%s.enabled" $way) -}}{{- end -}}
{{- end -}}
{{- if .Values.metrics.podAnnotations -}}{{- $scrapes = append $scrapes "metrics.podAnnotations" -}}{{- end -}}
{{- if gt (len $scrapes) 1 -}}
{{- fail (printf "choose one way to scrape the gateway, not %s: each series would be scraped twice and the dashboard's sums would double" (join " and " $scrapes)) -}}
{{- end -}}
{{- if and (not .Values.secrets.existingSecret) (contains (printf "file:%s/" .Values.secrets.mountPath) (toYaml $cfg)) -}}
{{- fail (printf "the config refers to files under %s but secrets.existingSecret is empty: name the Secret to mount there" .Values.secrets.mountPath) -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by the gateway container and the migrate Job. */}}
{{- define "webhook-gateway.env" -}}
- name: WEBHOOK_SECRETS_DIR
  value: {{ .Values.secrets.mountPath | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Mounts shared by the gateway container and the migrate Job. */}}
{{- define "webhook-gateway.volumeMounts" -}}
- name: webhook-gateway-config
  mountPath: /etc/webhook-gateway
  readOnly: true
{{- if .Values.secrets.existingSecret }}
- name: webhook-gateway-secrets
  mountPath: {{ .Values.secrets.mountPath }}
  readOnly: true
{{- end }}
- name: webhook-gateway-tmp
  mountPath: /tmp
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The volumes the gateway container mounts. The config volume is the whole ConfigMap as a
directory (no subPath): the kubelet then swaps the file in place on a change, which the gateway's
file watch picks up. Call with a "configMap" key in the context to mount another ConfigMap (the
migrate Job does).
*/}}
{{- define "webhook-gateway.sidecarVolumes" -}}
- name: webhook-gateway-config
  configMap:
    name: {{ .configMap | default (include "webhook-gateway.fullname" .) }}
{{- if .Values.secrets.existingSecret }}
- name: webhook-gateway-secrets
  secret:
    secretName: {{ .Values.secrets.existingSecret }}
    defaultMode: {{ int .Values.secrets.defaultMode }}
    optional: {{ .Values.secrets.optional }}
{{- end }}
- name: webhook-gateway-tmp
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The gateway container, as one item of a pod's `containers` list. Ports and volume names are
prefixed (gateway-http, webhook-gateway-*) so they cannot clash with the host pod's own.
*/}}
{{- define "webhook-gateway.sidecarContainer" -}}
{{- include "webhook-gateway.validate" . -}}
- name: webhook-gateway
  image: {{ include "webhook-gateway.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - run
    - --config
    - /etc/webhook-gateway/gateway.yaml
    {{- if gt (int .Values.workers) 1 }}
    - --workers
    - {{ int .Values.workers | quote }}
    {{- end }}
  ports:
    - name: gateway-http
      containerPort: {{ include "webhook-gateway.port" . }}
      protocol: TCP
    {{- with include "webhook-gateway.metricsPort" . }}
    - name: gateway-metrics
      containerPort: {{ . }}
      protocol: TCP
    {{- end }}
  env:
    {{- include "webhook-gateway.env" . | nindent 4 }}
  {{- with .Values.envFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  startupProbe:
    httpGet:
      path: /healthz
      port: gateway-http
    {{- with .Values.startupProbe }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: gateway-http
    {{- with .Values.livenessProbe }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $readiness := .Values.readinessProbe | default dict }}
  {{- if ne (toString $readiness.enabled) "false" }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: gateway-http
    {{- with omit $readiness "enabled" }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    {{- include "webhook-gateway.volumeMounts" . | nindent 4 }}
{{- end -}}

{{/*
Pod annotations for the pod that runs the gateway: the config checksum (configReload: rollout)
and, optionally, annotation-based scrape hints. Empty output is possible.
*/}}
{{- define "webhook-gateway.sidecarPodAnnotations" -}}
{{- $lines := list -}}
{{- if eq .Values.configReload "rollout" -}}
{{- $lines = append $lines (printf "checksum/webhook-gateway-config: %s" (include "webhook-gateway.configChecksum" .)) -}}
{{- end -}}
{{- if .Values.metrics.podAnnotations -}}
{{- $lines = append $lines "prometheus.io/scrape: \"true\"" -}}
{{- $lines = append $lines (printf "prometheus.io/port: %q" (include "webhook-gateway.metricsPort" . | default (include "webhook-gateway.port" .))) -}}
{{- $lines = append $lines "prometheus.io/path: /metrics" -}}
{{- end -}}
{{- join "\n" $lines -}}
{{- end -}}
