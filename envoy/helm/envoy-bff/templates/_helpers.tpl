{{/* The chart's name. */}}
{{- define "envoy-bff.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name for every object; <fullname>-pods etc. stay within 63 characters. */}}
{{- define "envoy-bff.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "envoy-bff.selectorLabels" -}}
app.kubernetes.io/name: {{ include "envoy-bff.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "envoy-bff.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "envoy-bff.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "envoy-bff.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "envoy-bff.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "envoy-bff.keysSecretName" -}}
{{- default (printf "%s-keys" (include "envoy-bff.fullname" .)) .Values.sessionKeys.secretName }}
{{- end }}

{{- define "envoy-bff.envSecretName" -}}
{{- default (printf "%s-env" (include "envoy-bff.fullname" .)) .Values.envSecret.secretName }}
{{- end }}

{{/* Where the pod sees the session key Secret and the config ConfigMap. */}}
{{- define "envoy-bff.keysDir" -}}/etc/envoy-bff/keys{{- end }}
{{- define "envoy-bff.configDir" -}}/etc/envoy-bff/config{{- end }}
{{- define "envoy-bff.configFile" -}}envoy-bff.yaml{{- end }}

{{/*
envoy-bff's config file: .Values.config plus what the chart owns, the
listeners' addresses (from .Values.ports) and the session key files (in the
mounted Secret).
*/}}
{{- define "envoy-bff.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $listen := deepCopy ((get $cfg "listen") | default dict) }}
{{- $_ := set $listen "grpc" (printf "0.0.0.0:%d" (int .Values.ports.grpc)) }}
{{- $_ := set $listen "http" (printf "0.0.0.0:%d" (int .Values.ports.http)) }}
{{- $_ := set $listen "admin" (printf "0.0.0.0:%d" (int .Values.ports.admin)) }}
{{- $_ := set $cfg "listen" $listen }}
{{- $session := deepCopy ((get $cfg "session") | default dict) }}
{{- $_ := set $session "encryption_keys_file" (printf "%s/encryption_keys" (include "envoy-bff.keysDir" .)) }}
{{- $_ := set $session "hash_key_file" (printf "%s/hash_key" (include "envoy-bff.keysDir" .)) }}
{{- $_ := set $cfg "session" $session }}
{{- toYaml $cfg }}
{{- end }}

{{/* The gRPC (ext_authz) and HTTP (browser endpoints) ports of the Services. */}}
{{- define "envoy-bff.servicePorts" -}}
- name: grpc
  port: {{ .Values.ports.grpc }}
  targetPort: grpc
  protocol: TCP
  appProtocol: grpc
- name: http
  port: {{ .Values.ports.http }}
  targetPort: http
  protocol: TCP
  appProtocol: http
{{- end }}
