{{/* The operator's namespace. */}}
{{- define "flagpole.namespace" -}}
{{- .Values.defaultNamespace -}}
{{- end -}}

{{/* flagpole's image: repository:tag, or repository:tag@digest. */}}
{{- define "flagpole.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The sidecar's image: sidecarConfiguration.image, or flagpole's own. */}}
{{- define "flagpole.sidecarImage" -}}
{{- if .Values.sidecarConfiguration.image.repository -}}
{{- printf "%s:%s" .Values.sidecarConfiguration.image.repository (required "sidecarConfiguration.image.tag is required with sidecarConfiguration.image.repository" .Values.sidecarConfiguration.image.tag) -}}
{{- else -}}
{{- include "flagpole.image" . -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object; component given as .component. */}}
{{- define "flagpole.labels" -}}
app.kubernetes.io/name: flagpole
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of a component's pods. */}}
{{- define "flagpole.selector" -}}
app.kubernetes.io/name: flagpole
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* OFO's "k1:v1,k2:v2" of a map, sorted. */}}
{{- define "flagpole.pairs" -}}
{{- $out := list -}}
{{- range $k := keys . | sortAlpha -}}
{{- $out = append $out (printf "%s:%s" $k (index $ $k)) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/* The container of the operator, the webhook or the controller (.mode). */}}
{{- define "flagpole.container" -}}
{{- $v := .root.Values -}}
{{- if $v.sidecarConfiguration.providerArgs -}}
{{- fail "sidecarConfiguration.providerArgs is not supported by flagpole (docs/install.md, \"Helm\")" -}}
{{- end -}}
- name: {{ .mode }}
  image: {{ include "flagpole.image" .root }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args:
    - {{ .mode }}
    - --log-level={{ $v.controllerManager.logLevel }}
    {{- if ne .mode "controller" }}
    {{- if $v.certManager.enabled }}
    - --cert-dir=/etc/flagpole/webhook-certs
    {{- end }}
    {{- if $v.webhookClientAuth.caConfigMap }}
    - --webhook-client-ca=/etc/flagpole/webhook-client-ca/ca.crt
    {{- with $v.webhookClientAuth.names }}
    - --webhook-client-names={{ join "," . }}
    {{- end }}
    {{- else if $v.webhookClientAuth.names }}
    {{- fail "webhookClientAuth.names needs webhookClientAuth.caConfigMap (the names are checked on client certificates)" }}
    {{- end }}
    {{- if ne (toString $v.managerConfig.flagsValidationEnabled) "true" }}
    - --no-flags-validation
    {{- end }}
    {{- end }}
    - --sidecar-image-pull-policy={{ $v.sidecarConfiguration.imagePullPolicy }}
    - --sidecar-cpu-limit={{ $v.sidecarConfiguration.resources.limits.cpu }}
    - --sidecar-ram-limit={{ $v.sidecarConfiguration.resources.limits.memory }}
    - --sidecar-cpu-request={{ $v.sidecarConfiguration.resources.requests.cpu }}
    - --sidecar-ram-request={{ $v.sidecarConfiguration.resources.requests.memory }}
    - --cross-namespace={{ $v.sidecarConfiguration.crossNamespace }}
    {{- if ne .mode "webhook" }}
    {{- with $v.imagePullSecrets }}
    - --image-pull-secrets={{ include "flagpole.pullSecretNames" . }}
    {{- end }}
    {{- with $v.labels }}
    - --labels={{ include "flagpole.pairs" . }}
    {{- end }}
    {{- with $v.annotations }}
    - --annotations={{ include "flagpole.pairs" . }}
    {{- end }}
    {{- end }}
  env:
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: FLAGPOLE_SIDECAR_IMAGE
      value: {{ include "flagpole.sidecarImage" .root | quote }}
    - name: FLAGPOLE_IMAGE
      value: {{ include "flagpole.image" .root | quote }}
    - name: GOMEMLIMIT
      valueFrom:
        resourceFieldRef:
          resource: limits.memory
    - {name: SIDECAR_PORT, value: {{ $v.sidecarConfiguration.port | quote }}}
    - {name: SIDECAR_MANAGEMENT_PORT, value: {{ $v.sidecarConfiguration.managementPort | quote }}}
    - {name: SIDECAR_SOCKET_PATH, value: {{ $v.sidecarConfiguration.socketPath | quote }}}
    - {name: SIDECAR_ENV_VAR_PREFIX, value: {{ $v.sidecarConfiguration.envVarPrefix | quote }}}
    - {name: SIDECAR_SYNC_PROVIDER, value: {{ $v.sidecarConfiguration.defaultSyncProvider | quote }}}
    - {name: SIDECAR_EVALUATOR, value: {{ $v.sidecarConfiguration.evaluator | quote }}}
    - {name: SIDECAR_LOG_FORMAT, value: {{ $v.sidecarConfiguration.logFormat | quote }}}
    - {name: SIDECAR_PROBES_ENABLED, value: {{ $v.sidecarConfiguration.probesEnabled | quote }}}
    - {name: IN_PROCESS_PORT, value: {{ $v.inProcessConfiguration.port | quote }}}
    - {name: IN_PROCESS_HOST, value: {{ $v.inProcessConfiguration.host | quote }}}
    - {name: IN_PROCESS_SOCKET_PATH, value: {{ $v.inProcessConfiguration.socketPath | quote }}}
    - {name: IN_PROCESS_TLS, value: {{ $v.inProcessConfiguration.tls | quote }}}
    - {name: IN_PROCESS_OFFLINE_FLAG_SOURCE_PATH, value: {{ $v.inProcessConfiguration.offlineFlagSourcePath | quote }}}
    - {name: IN_PROCESS_SELECTOR, value: {{ $v.inProcessConfiguration.selector | quote }}}
    - {name: IN_PROCESS_ENV_VAR_PREFIX, value: {{ $v.inProcessConfiguration.envVarPrefix | quote }}}
    - {name: IN_PROCESS_CACHE, value: {{ $v.inProcessConfiguration.cache.type | quote }}}
    - {name: IN_PROCESS_CACHE_MAX_SIZE, value: {{ $v.inProcessConfiguration.cache.size | quote }}}
    - {name: FLAGD_PROXY_REPLICA_COUNT, value: {{ $v.flagdProxyConfiguration.replicaCount | quote }}}
    - {name: FLAGD_PROXY_PORT, value: {{ $v.flagdProxyConfiguration.port | quote }}}
    - {name: FLAGD_PROXY_MANAGEMENT_PORT, value: {{ $v.flagdProxyConfiguration.managementPort | quote }}}
    - {name: FLAGD_PROXY_DEBUG_LOGGING, value: {{ $v.flagdProxyConfiguration.debugLogging | quote }}}
    - {name: FLAGPOLE_FLAGD_PROXY_TLS, value: {{ $v.flagdProxyConfiguration.tls | quote }}}
  ports:
    {{- if ne .mode "controller" }}
    - name: webhook
      containerPort: 9443
      protocol: TCP
    {{- end }}
    - name: management
      containerPort: 8081
      protocol: TCP
  lifecycle:
    preStop:
      sleep:
        seconds: 5
  livenessProbe:
    httpGet:
      path: /healthz
      port: management
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 3
  readinessProbe:
    httpGet:
      path: /readyz
      port: management
    periodSeconds: 5
    timeoutSeconds: 2
    failureThreshold: 2
  startupProbe:
    httpGet:
      path: /healthz
      port: management
    periodSeconds: 2
    failureThreshold: 30
  resources:
    {{- toYaml $v.controllerManager.resources | nindent 4 }}
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: [ALL]
  {{- if and (or $v.certManager.enabled $v.webhookClientAuth.caConfigMap) (ne .mode "controller") }}
  volumeMounts:
    {{- if $v.certManager.enabled }}
    - name: webhook-cert
      mountPath: /etc/flagpole/webhook-certs
      readOnly: true
    {{- end }}
    {{- if $v.webhookClientAuth.caConfigMap }}
    - name: webhook-client-ca
      mountPath: /etc/flagpole/webhook-client-ca
      readOnly: true
    {{- end }}
  {{- end }}
{{- end -}}


{{/* Names of imagePullSecrets given as {name: x} (as in a pod spec) or as strings. */}}
{{- define "flagpole.pullSecretNames" -}}
{{- $names := list -}}
{{- range . -}}
{{- if kindIs "map" . -}}{{- $names = append $names .name -}}{{- else -}}{{- $names = append $names . -}}{{- end -}}
{{- end -}}
{{- join "," $names -}}
{{- end -}}

{{/* imagePullSecrets of a pod spec. */}}
{{- define "flagpole.podPullSecrets" -}}
{{- range . }}
- name: {{ if kindIs "map" . }}{{ .name }}{{ else }}{{ . }}{{ end }}
{{- end -}}
{{- end -}}

{{/* The pod spec of a component (.component, .mode). */}}
{{- define "flagpole.pod" -}}
{{- $v := .root.Values -}}
metadata:
  labels:
    {{- include "flagpole.selector" . | nindent 4 }}
    {{- with $v.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $v.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: flagpole-operator
  securityContext:
    runAsNonRoot: true
    seccompProfile:
      type: RuntimeDefault
  terminationGracePeriodSeconds: 30
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- include "flagpole.podPullSecrets" . | nindent 4 }}
  {{- end }}
  {{- with $v.controllerManager.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $v.controllerManager.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.controllerManager.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.controllerManager.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "flagpole.selector" . | nindent 10 }}
    - maxSkew: 1
      topologyKey: topology.kubernetes.io/zone
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "flagpole.selector" . | nindent 10 }}
  containers:
    {{- include "flagpole.container" . | nindent 4 }}
  {{- if and (or $v.certManager.enabled $v.webhookClientAuth.caConfigMap) (ne .mode "controller") }}
  volumes:
    {{- if $v.certManager.enabled }}
    - name: webhook-cert
      secret:
        secretName: flagpole-webhook-cert
        defaultMode: 0440
    {{- end }}
    {{- if $v.webhookClientAuth.caConfigMap }}
    - name: webhook-client-ca
      configMap:
        name: {{ $v.webhookClientAuth.caConfigMap }}
        items:
          - key: ca.crt
            path: ca.crt
    {{- end }}
  {{- end }}
{{- end -}}
