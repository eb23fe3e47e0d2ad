"""Table definitions: every setting of a table, compared, created and handed to infrastructure code.

    DescribeTable + DescribeTimeToLive + DescribeContinuousBackups + ListTagsOfResource
    + DescribeContributorInsights + GetResourcePolicy + DescribeKinesisStreamingDestination
            │ read.read_definition                       spec file │ spec.parse_spec
            ▼                                                      ▼
                     model.TableDefinition (CloudFormation-shaped properties)
            │ apply.create_from_definition   │ diff.diff_definitions   │ render.render
            ▼                                ▼                         ▼
      CreateTable, then post-creation   settings that differ       spec, CloudFormation,
      settings after ACTIVE, checked    (exit 0 / 4)               Terraform, CDK

``model`` and ``render`` and ``diff`` are pure (no I/O); ``read`` and ``apply`` talk to DynamoDB
through :class:`ddbmigrate.aws.client.DynamoClient`.
"""
