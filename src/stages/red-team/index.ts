export {
  buildQuestionPrompt,
  instructionLabel,
  type ParsedQuestion,
  parseQuestions,
  type SeedQuestion,
  type TypedTopic,
} from "./questions.js";
export {
  questionSamplingDefaults,
  type RedTeamRecord,
  type RunRedTeamOptions,
  type RunRedTeamResult,
  redTeamStage,
  redTeamTopicsStage,
  runRedTeam,
  runRedTeamTopics,
  type TopicRecord,
  topicSamplingDefaults,
} from "./run.js";
export {
  balanceTopics,
  buildTopicPrompt,
  checkTopic,
  type ParsedTopic,
  parseTopics,
  type TopicFilterName,
  topicFilterNames,
} from "./topics.js";
