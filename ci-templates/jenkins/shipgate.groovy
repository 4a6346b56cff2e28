// shipgate for Jenkins pipelines: a shared-library step (vars/shipgateDeploy.groovy).
// Records the start (after the gate, if asked), runs the body, and records the outcome on
// success, failure and abort.
//
//   shipgateDeploy(service: 'checkout', environment: 'production', version: env.GIT_COMMIT,
//                  change: 'CR-12', gate: true) {
//       sh './deploy.sh'
//   }
//
// Credentials: a Secret text credential 'shipgate-token'; SHIPGATE_URL in the environment.
// (Alternatively, point the Notification plugin at
//  $SHIPGATE_URL/api/v1/integrations/jenkins?service=checkout&environment=production.)
def call(Map args, Closure body) {
    withCredentials([string(credentialsId: args.get('credentialsId', 'shipgate-token'), variable: 'SHIPGATE_TOKEN')]) {
        def idFile = "${env.WORKSPACE}/.shipgate-id"
        if (args.gate) {
            sh "shipgate gate wait --change '${args.change}' --env '${args.environment}' --timeout '${args.get('gateTimeout', '30m')}'"
        }
        def extra = (args.artifact ? " --artifact '${args.artifact}'" : '') + (args.change ? " --change '${args.change}'" : '')
        sh "shipgate deploy start --service '${args.service}' --env '${args.environment}' --version '${args.version}' --commit '${env.GIT_COMMIT ?: ''}'${extra} --id-file '${idFile}'"
        def status = 'failed'
        try {
            body()
            status = 'succeeded'
        } catch (org.jenkinsci.plugins.workflow.steps.FlowInterruptedException e) {
            status = 'cancelled'
            throw e
        } finally {
            sh "SHIPGATE_ID_FILE='${idFile}' shipgate deploy finish --status ${status}"
        }
    }
}
